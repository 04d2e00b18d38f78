"""German as in Switzerland (Django's de_CH): figures grouped by a non-breaking space with a
decimal comma (1 234 567,5), the Federal Chancellery's rule for figures that are not amounts
of money; dates as Django's German (01.12.2026 23:46). Anything not set here is Django's ``de``."""

DECIMAL_SEPARATOR = ","
THOUSAND_SEPARATOR = "\xa0"  # non-breaking space
NUMBER_GROUPING = 3
