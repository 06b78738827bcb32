"""Lifecycle rule evaluation: S3's semantics as table tests over one key's versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from datawarehouse.service.lifecycle import (
    Action,
    LifecycleFilter,
    LifecycleRule,
    VersionInfo,
    due_after,
    plan_key,
    plan_upload,
    rules_from_json,
    rules_to_json,
)

T0 = datetime(2026, 1, 10, 15, 30, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def v(vid: str, at: datetime, *, marker: bool = False, size: int = 100, tags: dict[str, str] | None = None,
      locked: bool = False) -> VersionInfo:  # fmt: skip
    return VersionInfo(vid, at, marker, size, tags or {}, locked)


def test_due_after_rounds_up_to_the_next_midnight_utc() -> None:
    assert due_after(T0, 1) == datetime(2026, 1, 12, tzinfo=UTC)
    assert due_after(datetime(2026, 1, 10, tzinfo=UTC), 1) == datetime(2026, 1, 11, tzinfo=UTC)  # already midnight


@pytest.mark.parametrize("days", [2_913_000, 999_999_999, 10**12, 9_999_999_999_999_999_999])
def test_a_day_count_past_year_9999_is_never_due(days: int) -> None:
    """A rule may say any 19-digit day count; the job must not fail on it (it raised OverflowError)."""
    assert due_after(T0, days) == datetime.max.replace(tzinfo=UTC)


def test_expiration_days_expires_the_current_version_only_when_due() -> None:
    rules = [LifecycleRule("r", True, expiration_days=30)]
    versions = [v("2", day(0)), v("1", day(-40))]
    assert plan_key(rules, "k", versions, day(29)) == []
    assert plan_key(rules, "k", versions, day(31)) == [Action("expire_current", "k", "2", "r")]


def test_expiration_date_and_disabled_rules() -> None:
    date = datetime(2026, 3, 1, tzinfo=UTC)
    rules = [LifecycleRule("off", False, expiration_days=1), LifecycleRule("d", True, expiration_date=date)]
    assert plan_key(rules, "k", [v("1", day(0))], date - timedelta(seconds=1)) == []
    assert plan_key(rules, "k", [v("1", day(0))], date) == [Action("expire_current", "k", "1", "d")]


def test_filters_prefix_tags_and_sizes() -> None:
    f = LifecycleFilter(prefix="logs/", tags=(("tier", "cold"),), size_greater_than=10, size_less_than=1000)
    rules = [LifecycleRule("r", True, f, expiration_days=1)]
    now = day(5)
    ok = [v("1", day(0), size=500, tags={"tier": "cold", "x": "y"})]
    assert plan_key(rules, "logs/a", ok, now)
    assert not plan_key(rules, "data/a", ok, now)
    assert not plan_key(rules, "logs/a", [v("1", day(0), size=500, tags={"tier": "hot"})], now)
    assert not plan_key(rules, "logs/a", [v("1", day(0), size=10, tags={"tier": "cold"})], now)  # strictly greater
    assert not plan_key(rules, "logs/a", [v("1", day(0), size=1000, tags={"tier": "cold"})], now)  # strictly less


def test_noncurrent_days_count_from_when_the_successor_was_written() -> None:
    rules = [LifecycleRule("nc", True, noncurrent_days=7)]
    versions = [v("3", day(10)), v("2", day(5)), v("1", day(0))]
    # v2 became noncurrent at day 10 (due day 17 -> midnight), v1 at day 5 (due day 12 -> midnight).
    assert plan_key(rules, "k", versions, day(13)) == [Action("delete_version", "k", "1", "nc")]
    assert plan_key(rules, "k", versions, day(18)) == [
        Action("delete_version", "k", "2", "nc"),
        Action("delete_version", "k", "1", "nc"),
    ]


def test_newer_noncurrent_versions_are_kept_whatever_their_age() -> None:
    rules = [LifecycleRule("nc", True, noncurrent_days=1, newer_noncurrent_versions=2)]
    versions = [v(str(i), day(-i)) for i in range(6)]  # "0" current, "1".."5" noncurrent
    planned = plan_key(rules, "k", versions, day(30))
    assert [a.version_id for a in planned] == ["3", "4", "5"]


def test_locked_versions_are_reported_never_deleted() -> None:
    rules = [LifecycleRule("nc", True, noncurrent_days=1)]
    versions = [v("2", day(1)), v("1", day(0), locked=True)]
    assert plan_key(rules, "k", versions, day(30)) == [Action("skip_locked", "k", "1", "nc")]


def test_expired_object_delete_marker_only_when_nothing_is_behind_it() -> None:
    rules = [LifecycleRule("m", True, expired_object_delete_marker=True)]
    assert plan_key(rules, "k", [v("2", day(1), marker=True), v("1", day(0))], day(30)) == []
    assert plan_key(rules, "k", [v("2", day(1), marker=True)], day(30)) == [
        Action("remove_delete_marker", "k", "2", "m")
    ]


def test_current_delete_marker_is_not_expired_and_noncurrent_markers_are() -> None:
    rules = [LifecycleRule("r", True, expiration_days=1, noncurrent_days=1)]
    versions = [v("3", day(2), marker=True), v("2", day(1), marker=True), v("1", day(0))]
    planned = plan_key(rules, "k", versions, day(30))
    assert [(a.kind, a.version_id) for a in planned] == [("delete_version", "2"), ("delete_version", "1")]


def test_tag_rules_do_not_reach_delete_markers() -> None:
    rules = [LifecycleRule("t", True, LifecycleFilter(tags=(("a", "b"),)), noncurrent_days=1)]
    versions = [v("3", day(2)), v("2", day(1), marker=True), v("1", day(0), tags={"a": "b"})]
    assert [a.version_id for a in plan_key(rules, "k", versions, day(30))] == ["1"]


def test_one_action_per_version_first_rule_wins() -> None:
    rules = [LifecycleRule("a", True, noncurrent_days=1), LifecycleRule("b", True, noncurrent_days=2)]
    planned = plan_key(rules, "k", [v("2", day(1)), v("1", day(0))], day(30))
    assert planned == [Action("delete_version", "k", "1", "a")]


def test_abort_incomplete_uploads() -> None:
    rules = [LifecycleRule("ab", True, LifecycleFilter(prefix="tmp/"), abort_multipart_days=3)]
    assert plan_upload(rules, "tmp/x", day(0), day(2)) is None
    assert plan_upload(rules, "tmp/x", day(0), day(4)) == "ab"
    assert plan_upload(rules, "keep/x", day(0), day(40)) is None


def test_empty_versions_plan_nothing() -> None:
    assert plan_key([LifecycleRule("r", True, expiration_days=1)], "k", [], day(3)) == []


@pytest.mark.parametrize(
    "rule",
    [
        LifecycleRule("a", True, expiration_days=3),
        LifecycleRule("b", False, LifecycleFilter("p/", (("k", "v"),), 1, 99), expiration_date=day(40)),
        LifecycleRule("c", True, expired_object_delete_marker=True, noncurrent_days=4, newer_noncurrent_versions=2),
        LifecycleRule("", True, LifecycleFilter("x"), abort_multipart_days=1),
    ],
)
def test_json_round_trip(rule: LifecycleRule) -> None:
    assert rules_from_json(rules_to_json([rule])) == (rule,)
