"""Multi-row inserts without the ORM's per-value work, for the rows mail
ingestion writes for every mail (document, files, search entry, dedup row,
location) and the chains' entries.

``QuerySet.bulk_create`` builds its SQL value by value through each field's
``pre_save``, ``get_db_prep_save`` and ``field_as_sql``: about a fifth of the
archive step's CPU in a profile of a 100-mail batch. ``create`` does what it
does for these models — every concrete field but an automatic primary key, the
``auto_now``/``auto_now_add`` times set, each value
prepared as its field would prepare it (plain ``str``/``int``/``bool``/``None``
values as they are, everything else by the field itself), one ``INSERT … RETURNING``
where the backend returns keys — and sends no signals (neither does ``bulk_create``).
On MySQL the values are quoted by the driver's own escaping straight into the
statement, each distinct text once (``literals``), instead of a query with
thousands of parameters that the driver formats one by one."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from django.db import connections, models, router
from django.db.models.constants import OnConflict
from django.db.models.fields import AutoFieldMixin

M = TypeVar("M", bound=models.Model)
Prepare = Callable[[Any, Any], Any]  # (value, connection) -> the database value


def literals(connection: Any) -> Callable[[Any], str] | None:
    """MySQL: a function from a database value to its SQL literal, quoted by the
    driver's own escaping (what it does to each parameter of a query), each
    distinct text quoted once (a batch's ledger entries share their time, actor,
    event and details). Other databases: ``None`` (they bind parameters)."""
    if connection.vendor != "mysql":
        return None
    connection.ensure_connection()
    driver = connection.connection
    escape, encoding = driver.literal, driver.encoding
    quoted: dict[Any, str] = {}

    def literal(value: Any) -> str:
        if type(value) is int:
            return int.__repr__(value)
        if value is None:
            return "NULL"
        text = quoted.get(value)
        if text is None:
            text = quoted[value] = escape(value).decode(encoding)
        return text

    return literal


def insert_rows(
    model: type[models.Model],
    fields: Sequence[models.Field[Any, Any]],
    params: list[Any],
    count: int,
    *,
    using: str,
    returning: models.Field[Any, Any] | None = None,
    ignore_conflicts: bool = False,
) -> list[Any]:
    """Insert ``count`` rows whose database values are ``params`` (row after
    row, in ``fields`` order): one multi-row INSERT (more where the backend
    limits a query's parameters). Returns the ``returning`` column of the new
    rows where the backend returns it (never with ``ignore_conflicts``)."""
    connection = connections[using]
    ops = connection.ops
    width = len(fields)
    per_query = max(1, ops.bulk_batch_size(list(fields), [None] * count))
    returned = ""
    if returning is not None and not ignore_conflicts and connection.features.can_return_rows_from_bulk_insert:
        returned, _ = ops.return_insert_columns([returning])
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    head = (
        f"{ops.insert_statement(on_conflict=on_conflict)} {ops.quote_name(model._meta.db_table)} "
        f"({', '.join(ops.quote_name(f.column) for f in fields)}) VALUES "
    )
    tail = ops.on_conflict_suffix_sql(list(fields), on_conflict, None, None)
    row = "(" + ", ".join(["%s"] * width) + ")"
    literal = literals(connection)
    ids: list[Any] = []
    with connection.cursor() as cursor:
        for start in range(0, count, per_query):
            n = min(per_query, count - start)
            chunk = params[start * width : (start + n) * width]
            if literal is None:
                cursor.execute(f"{head}{', '.join([row] * n)} {tail} {returned}", chunk)
            else:  # the values as the driver would have quoted them, no parameters
                rows = ", ".join(
                    "(" + ", ".join(map(literal, chunk[i : i + width])) + ")" for i in range(0, len(chunk), width)
                )
                cursor.execute(f"{head}{rows} {tail} {returned}")
            if returned:
                ids.extend(r[0] for r in cursor.fetchall())
    return ids


@dataclasses.dataclass(frozen=True)
class _Plan:
    fields: list[models.Field[Any, Any]]  # inserted, in column order
    attnames: list[str]
    prepare: list[Prepare]
    stamped: list[models.Field[Any, Any]]  # auto_now / auto_now_add: set by the field's pre_save
    related: list[str]  # foreign keys' attnames (an unsaved related object is an error)
    auto_pk: models.Field[Any, Any] | None


def _preparer(field: models.Field[Any, Any]) -> Prepare:
    plain: tuple[type, ...] = ()
    if isinstance(field, models.JSONField):
        pass  # always the field's own encoding
    elif isinstance(field, models.BooleanField):
        plain = (bool,)
    elif isinstance(field, models.CharField | models.TextField):
        plain = (str,)
    elif isinstance(field, models.IntegerField | models.ForeignKey):
        plain = (int,)
    nullable = field.null

    def prepare(value: Any, connection: Any) -> Any:
        if type(value) in plain or (value is None and nullable):
            return value
        return field.get_db_prep_save(value, connection)

    return prepare


@functools.cache
def _plan(model: type[models.Model]) -> _Plan:
    meta = model._meta
    pk = meta.pk
    auto_pk = pk if isinstance(pk, AutoFieldMixin) else None
    if meta.parents:
        raise TypeError(f"{model.__name__}: multi-table inheritance is not supported")
    fields = [f for f in meta.concrete_fields if f is not auto_pk]
    return _Plan(
        fields=fields,
        attnames=[f.attname for f in fields],
        prepare=[_preparer(f) for f in fields],
        stamped=[
            f
            for f in fields
            if isinstance(f, models.DateField) and (getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False))
        ],
        related=[f.attname for f in fields if f.is_relation],
        auto_pk=auto_pk,
    )


def create(objs: Iterable[M], *, ignore_conflicts: bool = False) -> list[M]:
    """Insert new instances of one model (``QuerySet.bulk_create`` for the
    models of ingestion: no multi-table inheritance, primary keys from the
    database or given). Sets their primary keys where the backend returns them
    (not with ``ignore_conflicts``, like ``bulk_create``) and returns them."""
    objs = list(objs)
    if not objs:
        return []
    model = type(objs[0])
    using = router.db_for_write(model)
    plan = _plan(model)
    connection = connections[using]
    params: list[Any] = []
    for obj in objs:
        if type(obj) is not model:
            raise TypeError(f"one model per call: {model.__name__} and {type(obj).__name__}")
        for field in plan.stamped:
            field.pre_save(obj, True)  # sets the attribute: the time now
        for name in plan.related:
            if getattr(obj, name) is None:  # set through a related object saved after: as bulk_create does
                obj._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
                break
        values = obj.__dict__
        params.extend(
            prepare(values[name], connection) for name, prepare in zip(plan.attnames, plan.prepare, strict=True)
        )
    ids = insert_rows(
        model, plan.fields, params, len(objs), using=using, returning=plan.auto_pk, ignore_conflicts=ignore_conflicts
    )
    if plan.auto_pk is not None and ids:
        for obj, pk in zip(objs, ids, strict=True):
            setattr(obj, plan.auto_pk.attname, pk)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using
    return objs
