"""English dates as the product has always shown them (ISO); German, French and Italian keep
Django's own formats (e.g. 01.12.2026 23:46). Templates use ``date:"SHORT_DATETIME_FORMAT"``."""

SHORT_DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATE_FORMAT = "Y-m-d"
