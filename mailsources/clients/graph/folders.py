"""Mail folders by path: listing them all ("Parent/Child", search folders skipped) and finding
one by the path the administrator configured (display names, or well-known names such as
``inbox`` for a mailbox in another language)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..base import FolderInfo, PermanentSourceError
from .errors import GraphError
from .transport import GraphTransport

_SEARCH_FOLDER = "#microsoft.graph.mailsearchfolder"
_WELL_KNOWN_FOLDERS = {
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "msgfolderroot",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
}


@dataclass
class FolderRef:
    id: str
    total: int | None


def split_path(path: str) -> list[str]:
    """ "Inbox/Projects" -> ["Inbox", "Projects"]; a "/" inside a folder name is written "\\/"."""
    parts, current, escaped = [], [], False
    for char in path:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "/":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def escape_name(name: str) -> str:
    return name.replace("\\", "\\\\").replace("/", "\\/")


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_search_folder(item: dict[str, Any]) -> bool:
    return bool(item.get("@odata.type", "").lower() == _SEARCH_FOLDER)


class Folders:
    """The folders of one mailbox; paths found by :meth:`list` are remembered for :meth:`resolve`."""

    def __init__(self, http: GraphTransport, *, page_size: int, include_hidden: bool) -> None:
        self._http = http
        self._page_size = page_size
        self._include_hidden = include_hidden
        self._known: dict[str, FolderRef] | None = None

    def list(self) -> list[FolderInfo]:
        """Every mail folder, recursively, as "Parent/Child" paths; search folders skipped."""
        found: dict[str, FolderRef] = {}
        extra = {"includeHiddenFolders": "true"} if self._include_hidden else {}

        def walk(prefix: str, url: str) -> None:
            # Depth-first, so a folder's children follow it; recursion depth = folder depth.
            items = list(self._http.paged(url, {"$top": str(self._page_size), **extra}))
            for item in items:
                if _is_search_folder(item):
                    continue  # a virtual view of other folders: archiving it duplicates mail
                path = f"{prefix}{escape_name(item.get('displayName') or item['id'])}"
                found[path] = FolderRef(item["id"], item.get("totalItemCount"))
                if item.get("childFolderCount"):
                    walk(path + "/", self._http.url(f"/mailFolders/{quote(item['id'], safe='')}/childFolders"))

        walk("", self._http.url("/mailFolders"))
        self._known = found
        return [FolderInfo(name=path, total=ref.total) for path, ref in found.items()]

    def resolve(self, path: str) -> FolderRef:
        """The folder at ``path``; PermanentSourceError(code="folder_not_found") when none is."""
        if self._known is not None and path in self._known:
            return self._known[path]
        parts = split_path(path)
        if not parts:
            raise PermanentSourceError("Empty folder name.", code="folder_not_found")
        current: dict[str, Any] | None = None
        for index, part in enumerate(parts):
            current = self._child(current, part, top_level=index == 0)
            if current is None:
                raise PermanentSourceError(
                    f"Folder {path!r} does not exist in mailbox {self._http.mailbox}.", code="folder_not_found"
                )
            if _is_search_folder(current):
                raise PermanentSourceError(
                    f"Folder {path!r} is a search folder; archive the folders it searches instead.",
                    code="folder_not_found",
                )
        assert current is not None
        return FolderRef(current["id"], current.get("totalItemCount"))

    def _child(self, parent: dict[str, Any] | None, name: str, *, top_level: bool) -> dict[str, Any] | None:
        if parent is None:
            url = self._http.url("/mailFolders")
        else:
            url = self._http.url(f"/mailFolders/{quote(parent['id'], safe='')}/childFolders")
        params = {
            "$filter": f"displayName eq {_odata_string(name)}",
            "$select": "id,displayName,totalItemCount",
            "includeHiddenFolders": "true",
        }
        matches = list(self._http.paged(url, params))
        if matches:
            return matches[0]
        well_known = name.replace(" ", "").lower()
        if top_level and well_known in _WELL_KNOWN_FOLDERS:
            # "Inbox" in a German mailbox is "Posteingang": fall back to well-known names.
            try:
                return self._http.get_json(self._http.url(f"/mailFolders/{well_known}"))
            except GraphError as err:
                if err.status != 404:
                    raise
        return None
