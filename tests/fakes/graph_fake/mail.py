"""Graph mail resources: folders, listings with ``$top/$skip/$select/$filter/$orderby``, single
messages, ``$value`` MIME, attachments, move/copy/delete."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

from .model import (
    _DEFAULT_PAGE,
    _MAX_TOP,
    _WELL_KNOWN_NAMES,
    _b64url,
    _Folder,
    _GraphFakeError,
    _iso,
    _Mailbox,
    _Message,
    _now,
    _opaque_id,
    _parse_dt,
    _Reply,
    _Req,
)

if TYPE_CHECKING:
    pass


class MailMixin:
    """Part of :class:`~tests.fakes.graph_fake.GraphFake` (whose state it uses)."""

    def _folder_for_request(self, mb: _Mailbox, ref: str) -> _Folder:
        if ref in mb.folders:
            return mb.folders[ref]
        if ref.lower() in mb.well_known:
            return mb.folders[mb.well_known[ref.lower()]]
        if ref.lower() in _WELL_KNOWN_NAMES:
            raise _GraphFakeError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        raise _GraphFakeError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def _folder_json(self, req: _Req, mb: _Mailbox, folder: _Folder) -> dict[str, Any]:
        items = self._folder_items(mb, folder)
        children = [f for f in mb.folders.values() if f.parent_id == folder.id]
        data: dict[str, Any] = {
            "id": folder.id,
            "displayName": folder.name,
            "parentFolderId": folder.parent_id or "",
            "childFolderCount": len(children),
            "unreadItemCount": sum(1 for m in items if not m.is_read),
            "totalItemCount": len(items),
            "isHidden": folder.hidden,
        }
        if folder.search:
            data = {
                "@odata.type": "#microsoft.graph.mailSearchFolder",
                **data,
                "isSupported": True,
                "includeNestedFolders": False,
                "sourceFolderIds": list(folder.search_sources),
                "filterQuery": folder.filter_query,
            }
        return self._apply_select(data, req.query.get("$select") or req.query.get("select"))

    @staticmethod
    def _apply_select(data: dict[str, Any], select: str | None) -> dict[str, Any]:
        if not select:
            return data
        wanted = {s.strip() for s in select.split(",") if s.strip()} | {"id"}
        return {k: v for k, v in data.items() if k in wanted or k.startswith("@odata")}

    def _page_params(self, req: _Req) -> tuple[int, int]:
        raw_top = req.query.get("$top") or req.query.get("top")
        prefer_size = req.prefer().get("odata.maxpagesize")
        try:
            top = int(raw_top) if raw_top else int(prefer_size) if prefer_size else _DEFAULT_PAGE
            skip = int(req.query.get("$skip") or req.query.get("skip") or 0)
        except ValueError as exc:
            raise _GraphFakeError(400, "ErrorInvalidUrlQuery", "Invalid value for $top or $skip.") from exc
        if top < 1:
            raise _GraphFakeError(400, "ErrorInvalidUrlQuery", "The value of $top must be at least 1.")
        if top > _MAX_TOP:
            if self.top_over_limit == "error":
                raise _GraphFakeError(400, "ErrorInvalidUrlQuery", f"The value of $top must be at most {_MAX_TOP}.")
            top = _MAX_TOP
        return top, max(skip, 0)

    def _next_link(self, req: _Req, skip: int) -> str:
        query = {k: v for k, v in parse_qsl(req.raw_query, keep_blank_values=True) if k not in {"$skip", "skip"}}
        query["$skip"] = str(skip)
        return f"{self.base_url}{req.path}?{urlencode(query, quote_via=quote, safe='$,')}"

    def _list_folders(self, req: _Req, mb: _Mailbox, parent: _Folder) -> _Reply:
        include_hidden = (req.query.get("includeHiddenFolders") or "").lower() == "true"
        children = [f for f in mb.folders.values() if f.parent_id == parent.id and (include_hidden or not f.hidden)]
        flt = req.query.get("$filter") or req.query.get("filter")
        if flt:
            match = re.fullmatch(r"\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*", flt)
            if not match:
                raise _GraphFakeError(
                    400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
                )
            name = match.group(1).replace("''", "'")
            children = [f for f in children if f.name.lower() == name.lower()]
        top, skip = self._page_params(req)
        page = children[skip : skip + top]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#users('{quote(mb.address)}')/mailFolders",
            "value": [self._folder_json(req, mb, f) for f in page],
        }
        if skip + top < len(children):
            body["@odata.nextLink"] = self._next_link(req, skip + top)
        return self._json(body)

    _FILTER_TERM = re.compile(
        r"\s*(receivedDateTime|sentDateTime|lastModifiedDateTime|createdDateTime|isRead)\s+"
        r"(eq|ne|ge|gt|le|lt)\s+([^\s]+)\s*",
        re.IGNORECASE,
    )

    def _parse_filter(self, text: str) -> list[tuple[str, str, Any]]:
        terms = []
        for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            match = self._FILTER_TERM.fullmatch(part)
            if not match:
                raise _GraphFakeError(
                    400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
                )
            prop, op, value = match.group(1), match.group(2).lower(), match.group(3)
            prop = prop[0].lower() + prop[1:]
            if prop == "isRead":
                parsed: Any = value.lower() == "true"
            else:
                try:
                    parsed = _parse_dt(value)
                except ValueError as exc:
                    raise _GraphFakeError(400, "BadRequest", f"Invalid filter value '{value}'.") from exc
            terms.append((prop, op, parsed))
        return terms

    @staticmethod
    def _msg_prop(msg: _Message, prop: str) -> Any:
        if prop == "receivedDateTime":
            return msg.received
        if prop == "createdDateTime":
            return msg.created
        if prop == "lastModifiedDateTime":
            return msg.modified
        if prop == "sentDateTime":
            return msg.meta()["sent"] or msg.received
        return msg.is_read

    def _matches(self, msg: _Message, terms: list[tuple[str, str, Any]]) -> bool:
        for prop, op, value in terms:
            actual = self._msg_prop(msg, prop)
            ok = {
                "eq": actual == value,
                "ne": actual != value,
                "ge": actual >= value,
                "gt": actual > value,
                "le": actual <= value,
                "lt": actual < value,
            }[op]
            if not ok:
                return False
        return True

    def _list_messages(self, req: _Req, mb: _Mailbox, items: list[_Message]) -> _Reply:
        flt = req.query.get("$filter") or req.query.get("filter")
        orderby = (req.query.get("$orderby") or req.query.get("orderby") or "").strip()
        terms = self._parse_filter(flt) if flt else []
        order_prop, descending = "receivedDateTime", True  # undocumented default: newest first
        if orderby:
            first = orderby.split(",")[0].split()
            order_prop = first[0][0].lower() + first[0][1:]
            descending = len(first) > 1 and first[1].lower() == "desc"
            if order_prop not in {
                "receivedDateTime",
                "sentDateTime",
                "createdDateTime",
                "lastModifiedDateTime",
            }:
                raise _GraphFakeError(400, "BadRequest", f"Sorting by '{first[0]}' is not supported.")
            # The documented rule: properties in $orderby must also be in $filter, first.
            if terms and terms[0][0] != order_prop:
                raise _GraphFakeError(
                    400,
                    "InefficientFilter",
                    "The restriction or sort order is too complex for this operation.",
                )
        if terms:
            items = [m for m in items if self._matches(m, terms)]
        items = sorted(items, key=lambda m: (self._msg_prop(m, order_prop), m.key), reverse=descending)
        top, skip = self._page_params(req)
        page = items[skip : skip + top]
        select = req.query.get("$select") or req.query.get("select")
        fields = [s.strip() for s in select.split(",")] if select else None
        immutable = req.immutable()
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#users('{quote(mb.address)}')/messages",
            "value": [self._message_json(mb, m, fields, immutable) for m in page],
        }
        if (req.query.get("$count") or "").lower() == "true":
            body["@odata.count"] = len(items)
        if skip + top < len(items):
            body["@odata.nextLink"] = self._next_link(req, skip + top)
        return self._json(body)

    def _message_json(self, mb: _Mailbox, msg: _Message, fields: list[str] | None, immutable: bool) -> dict[str, Any]:
        msg_id = msg.immutable_id if immutable else msg.regular_id
        if fields is not None and set(fields) <= {"id", "receivedDateTime", "parentFolderId", "isRead"}:
            # Fast path for the archiver's minimal listings (no MIME parsing).
            data: dict[str, Any] = {"@odata.etag": f'W/"{msg.change_key}"', "id": msg_id}
            if "receivedDateTime" in fields:
                data["receivedDateTime"] = _iso(msg.received)
            if "parentFolderId" in fields:
                data["parentFolderId"] = msg.folder_id
            if "isRead" in fields:
                data["isRead"] = msg.is_read
            return data
        meta = msg.meta()
        folder = mb.folders[msg.folder_id]
        text = meta["text"] or ""
        data = {
            "@odata.etag": f'W/"{msg.change_key}"',
            "id": msg_id,
            "createdDateTime": _iso(msg.created),
            "lastModifiedDateTime": _iso(msg.modified),
            "changeKey": msg.change_key,
            "categories": [],
            "receivedDateTime": _iso(msg.received),
            "sentDateTime": _iso(meta["sent"] or msg.received),
            "hasAttachments": any(not a["isInline"] for a in meta["attachments"]),
            "internetMessageId": meta["message_id"],
            "subject": meta["subject"],
            "bodyPreview": " ".join(text.split())[:255],
            "importance": "normal",
            "parentFolderId": msg.folder_id,
            "conversationId": _opaque_id("AAQkAGI2", "conv", meta["subject"]),
            "conversationIndex": _b64url(hashlib.sha1(meta["subject"].encode()).digest()),
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": msg.is_read,
            "isDraft": folder.well_known == "drafts",
            "webLink": f"https://outlook.office365.com/owa/?ItemID={quote(msg_id)}&exvsurl=1&viewmodel=ReadMessageItem",
            "inferenceClassification": "focused",
            "body": {"contentType": "html", "content": f"<html><body><pre>{text}</pre></body></html>"},
            "sender": (meta["sender"] or [None])[0],
            "from": (meta["from"] or [None])[0],
            "toRecipients": meta["to"],
            "ccRecipients": meta["cc"],
            "bccRecipients": meta["bcc"],
            "replyTo": meta["reply_to"],
            "flag": {"flagStatus": "notFlagged"},
        }
        if fields is not None:
            if "internetMessageHeaders" in fields:
                data["internetMessageHeaders"] = meta["headers"]
            wanted = set(fields) | {"id"}
            data = {k: v for k, v in data.items() if k in wanted or k.startswith("@odata")}
        return data

    def _message_request(self, req: _Req, mb: _Mailbox, msg_ref: str, tail: list[str]) -> _Reply:
        key = mb.ids.get(msg_ref)  # ids are case-sensitive
        if key is None or key not in mb.messages:
            raise _GraphFakeError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        msg = mb.messages[key]
        names = [t.lower() for t in tail]
        immutable = req.immutable()
        if not tail:
            if req.method == "GET":
                select = req.query.get("$select") or req.query.get("select")
                fields = [s.strip() for s in select.split(",")] if select else None
                return self._json(self._message_json(mb, msg, fields, immutable))
            if req.method == "DELETE":
                self._delete(mb, msg)
                return _Reply(204)
            if req.method == "PATCH":
                changes = json.loads(req.body or b"{}")
                if "isRead" in changes:
                    msg.is_read = bool(changes["isRead"])
                msg.modified = _now()
                msg.change_key = _b64url(secrets.token_bytes(12))
                self._record(mb, mb.folders[msg.folder_id], msg.key, "updated", msg.regular_id)
                return self._json(self._message_json(mb, msg, None, immutable))
            self._only(req, "GET", "DELETE", "PATCH")
        if names == ["$value"]:
            self._only(req, "GET")
            return _Reply(200, msg.raw, content_type="text/plain")
        if names in (["move"], ["copy"]):
            self._only(req, "POST")
            try:
                destination = json.loads(req.body or b"{}").get("destinationId", "")
            except ValueError as exc:
                raise _GraphFakeError(400, "ErrorInvalidRequest", "Cannot read the request body.") from exc
            target = self._folder_for_request(mb, destination) if destination else None
            if target is None or target.search:
                raise _GraphFakeError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
            if names == ["move"]:
                self._move(mb, msg, target)
                return self._json(self._message_json(mb, msg, None, immutable), 201)
            self._next_key += 1
            copy = dataclasses.replace(
                msg,
                key=self._next_key,
                immutable_id=_opaque_id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", "imm", mb.user_id, self._next_key),
                regular_id=_opaque_id("AAMkAGI2THVSAAA", "reg", mb.user_id, self._next_key, target.id, 0),
                folder_id=target.id,
                moves=0,
                _meta=None,
            )
            mb.messages[copy.key] = copy
            mb.ids[copy.immutable_id] = copy.key
            mb.ids[copy.regular_id] = copy.key
            target.messages[copy.key] = None
            self._record(mb, target, copy.key, "added", copy.regular_id)
            return self._json(self._message_json(mb, copy, None, immutable), 201)
        if names == ["permanentdelete"]:
            self._only(req, "POST")
            self._delete(mb, msg)
            return _Reply(204)
        if names and names[0] == "attachments":
            return self._attachments(req, msg, tail[1:])
        raise _GraphFakeError(400, "BadRequest", f"Resource not found for the segment '{tail[0]}'.")

    def _attachments(self, req: _Req, msg: _Message, tail: list[str]) -> _Reply:
        self._only(req, "GET")
        attachments = msg.meta()["attachments"]

        def attachment_json(index: int, att: dict[str, Any]) -> dict[str, Any]:
            data: dict[str, Any] = {
                "@odata.type": "#microsoft.graph.itemAttachment" if att["item"] else "#microsoft.graph.fileAttachment",
                "id": _opaque_id("AAMkAGI2ATT", msg.immutable_id, index),
                "lastModifiedDateTime": _iso(msg.modified),
                "name": att["name"],
                "contentType": att["contentType"],
                "size": len(att["bytes"]),
                "isInline": att["isInline"],
            }
            if not att["item"]:
                data["contentId"] = att["contentId"]
                data["contentLocation"] = None
                data["contentBytes"] = base64.b64encode(att["bytes"]).decode()
            return data

        items = [attachment_json(i, a) for i, a in enumerate(attachments)]
        if not tail:
            return self._json({"value": items})
        for index, item in enumerate(items):
            if item["id"] == tail[0]:
                if tail[1:] == ["$value"]:
                    return _Reply(200, attachments[index]["bytes"], content_type="application/octet-stream")
                return self._json(item)
        raise _GraphFakeError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
