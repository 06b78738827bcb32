"""docs/s3-compatibility.md is generated from the ``s3op`` markers (compat_matrix.py) and must be
up to date; every operation the router knows is there, served ones proven by a test,
unserved ones NotImplemented. No server needed."""

from __future__ import annotations

from compat_matrix import DOC, build, collect, generate, unknown_names

from datawarehouse.api.s3.handlers import HANDLERS, load_all
from datawarehouse.api.s3.router import OPERATIONS


def test_markers_name_known_operations_and_features() -> None:
    assert unknown_names(collect()) == []


def test_every_operation_and_feature_is_proven() -> None:
    ops, features = build()
    assert [r.name for r in ops] == list(OPERATIONS)
    assert [r.name for r in ops + features if r.status == "untested" or not r.tests] == []


def test_unserved_operations_are_not_implemented() -> None:
    load_all()
    ops, _ = build()
    for row in ops:
        assert (row.status == "NotImplemented") == (row.name not in HANDLERS) or row.status == "NotImplemented", row
        if row.name not in HANDLERS:
            assert row.status == "NotImplemented"


def test_document_is_up_to_date() -> None:
    assert DOC.read_text() == generate(), "run: .venv/bin/python -m tests.integration.s3.compat_matrix"
