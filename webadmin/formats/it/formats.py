"""Italian as in Switzerland: figures grouped by a non-breaking space with a decimal comma
(1 234 567,5), the same rule as German (webadmin/formats/de) instead of Italy's 1.234.567,5.
Anything not set here is Django's ``it``."""

DECIMAL_SEPARATOR = ","
THOUSAND_SEPARATOR = "\xa0"  # non-breaking space
NUMBER_GROUPING = 3
