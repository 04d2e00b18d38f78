"""Imports of existing mail archives (MBOX, .eml/.msg/.emlx files and ZIPs, PST/OST)
as one more client of the ingestion pipeline."""

from mailsources.clients.imports.client import ImportClient, ProgressHook, ZipLimits
from mailsources.clients.imports.discovery import Unit, discover

__all__ = ["ImportClient", "ProgressHook", "Unit", "ZipLimits", "discover"]
