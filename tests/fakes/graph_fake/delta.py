"""Per-folder delta rounds: ``@removed`` entries, ``$skiptoken``/``$deltatoken`` links and
``410`` resets."""

from __future__ import annotations

import bisect
import re
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .model import (
    _DELTA_FILTER_CAP,
    _MAX_TOP,
    _b64url,
    _DeltaRound,
    _DeltaState,
    _Folder,
    _GraphFakeError,
    _Mailbox,
    _Message,
    _opaque_id,
    _parse_dt,
    _Reply,
    _Req,
)

if TYPE_CHECKING:
    pass


class DeltaMixin:
    """Part of :class:`~tests.fakes.graph_fake.GraphFake` (whose state it uses)."""

    # -- delta ---------------------------------------------------------------------------------

    def _delta_link_base(self, mb: _Mailbox, folder: _Folder) -> str:
        # The form the docs' sample links use: .../mailfolders('<id>')/messages/delta
        user = quote(mb.address, safe="@")
        return f"{self.base_url}/v1.0/users/{user}/mailFolders('{folder.id}')/messages/delta"

    def _gone(self, mb: _Mailbox, folder: _Folder) -> _GraphFakeError:
        return _GraphFakeError(
            410,
            self.reset_code,
            "The sync state generation is not found or has expired; a full resync is required.",
            {"Location": self._delta_link_base(mb, folder) + "?$deltatoken="},
        )

    def _delta(self, req: _Req, mb: _Mailbox, folder: _Folder) -> _Reply:
        if folder.search:
            raise _GraphFakeError(400, "ErrorInvalidRequest", "Delta is not supported on search folders.")
        prefer = req.prefer()
        try:
            page_size = int(prefer.get("odata.maxpagesize") or req.query.get("$top") or self.delta_default_page)
        except ValueError as exc:
            raise _GraphFakeError(400, "BadRequest", "Invalid odata.maxpagesize.") from exc
        page_size = max(1, min(page_size, _MAX_TOP))
        skiptoken = req.query.get("$skiptoken")
        deltatoken = req.query.get("$deltatoken")
        if skiptoken:
            round_id, _, offset_text = skiptoken.rpartition(".")
            rnd = self._rounds.get(round_id)
            if rnd is None or rnd.folder_id != folder.id or rnd.generation != folder.generation:
                raise self._gone(mb, folder)
            offset = int(offset_text or 0)
        else:
            if deltatoken:
                state = self._delta_states.get(deltatoken)
                if state is None or state.folder_id != folder.id or state.generation != folder.generation:
                    raise self._gone(mb, folder)
                rnd = self._changes_round(mb, folder, state)
            else:
                rnd = self._initial_round(req, mb, folder)
            round_id = _b64url(secrets.token_bytes(12))
            self._rounds[round_id] = rnd
            offset = 0
        immutable = req.immutable()
        end = min(offset + page_size, len(rnd.entries))
        if self.delta_empty_page and end >= len(rnd.entries) and not rnd.empty_page_served:
            rnd.empty_page_served = True
            return self._json(
                {
                    "@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(message)",
                    "@odata.nextLink": f"{self._delta_link_base(mb, folder)}?$skiptoken={round_id}.{offset}",
                    "value": [],
                }
            )
        entries = rnd.entries[offset:end]
        if self.delta_replay and offset > 0:
            entries = [rnd.entries[offset - 1], *entries]
        value = []
        for key, kind, old_regular in entries:
            if kind == "removed":
                removed_id = self._removed_id(mb, key, old_regular, immutable)
                value.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": removed_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
                continue
            msg = mb.messages.get(key)
            if msg is None:  # deleted after the round started: Graph would report it next round
                continue
            item = self._message_json(mb, msg, rnd.select, immutable)
            value.append({"@odata.type": "#microsoft.graph.message", **item})
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(message)",
            "value": value,
        }
        if end < len(rnd.entries):
            body["@odata.nextLink"] = f"{self._delta_link_base(mb, folder)}?$skiptoken={round_id}.{end}"
        else:
            token = _b64url(secrets.token_bytes(18))
            self._delta_states[token] = _DeltaState(
                mb.address,
                folder.id,
                folder.generation,
                rnd.end_seq,
                rnd.select,
                rnd.filter_after,
                rnd.change_type,
            )
            body["@odata.deltaLink"] = f"{self._delta_link_base(mb, folder)}?$deltatoken={token}"
        return self._json(body)

    def _removed_id(self, mb: _Mailbox, key: int, old_regular: str, immutable: bool) -> str:
        if not immutable:
            return old_regular
        msg = mb.messages.get(key)
        if msg is not None:
            return msg.immutable_id
        return _opaque_id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", "imm", mb.user_id, key)

    def _initial_round(self, req: _Req, mb: _Mailbox, folder: _Folder) -> _DeltaRound:
        select_text = req.query.get("$select") or req.query.get("select")
        select = [s.strip() for s in select_text.split(",")] if select_text else None
        flt = req.query.get("$filter") or req.query.get("filter")
        filter_after = None
        if flt:
            match = re.fullmatch(r"\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*", flt, re.IGNORECASE)
            if not match:
                raise _GraphFakeError(
                    400, "ErrorInvalidUrlQueryFilter", "Delta supports only receivedDateTime ge|gt filters."
                )
            filter_after = (match.group(1).lower(), _parse_dt(match.group(2)))
        orderby = req.query.get("$orderby")
        if orderby and orderby.replace("+", " ").split() != ["receivedDateTime", "desc"]:
            raise _GraphFakeError(400, "BadRequest", "Delta supports only $orderby=receivedDateTime desc.")
        change_type = req.query.get("changeType")
        items = [mb.messages[k] for k in folder.messages]
        if filter_after:
            items = [m for m in items if self._after(m, filter_after)]
        items.sort(key=lambda m: (m.received, m.key), reverse=True)
        if filter_after:
            items = items[:_DELTA_FILTER_CAP]
        entries = [] if change_type in {"updated", "deleted"} else [(m.key, "created", "") for m in items]
        return _DeltaRound(mb.address, folder.id, folder.generation, entries, mb.seq, select, filter_after, change_type)

    @staticmethod
    def _after(msg: _Message, filter_after: tuple[str, datetime]) -> bool:
        op, when = filter_after
        return msg.received >= when if op == "ge" else msg.received > when

    def _changes_round(self, mb: _Mailbox, folder: _Folder, state: _DeltaState) -> _DeltaRound:
        start = bisect.bisect_right(folder.event_seqs, state.seq)
        first: dict[int, tuple[str, str]] = {}  # key -> (first kind in window, regular id then)
        last_seq: dict[int, int] = {}
        for seq, key, kind, regular in folder.events[start:]:
            first.setdefault(key, (kind, regular))
            last_seq[key] = seq
        entries: list[tuple[int, str, str]] = []
        for key in sorted(last_seq, key=last_seq.__getitem__):
            first_kind, first_regular = first[key]
            was_there = first_kind != "added"
            is_there = key in folder.messages
            if is_there:
                msg = mb.messages[key]
                if state.filter_after and not self._after(msg, state.filter_after):
                    continue
                kind = "updated" if was_there else "created"
            elif was_there:
                kind = "removed"
            else:
                continue  # came and went within the window
            if (
                state.change_type
                and {"created": "created", "updated": "updated", "removed": "deleted"}[kind] != state.change_type
            ):
                continue
            entries.append((key, kind, first_regular if kind == "removed" else ""))
        return _DeltaRound(
            mb.address,
            folder.id,
            folder.generation,
            entries,
            mb.seq,
            state.select,
            state.filter_after,
            state.change_type,
        )
