"""The example host's state against the `reservation-state` contract:
`python -m unittest test_embed` in this directory (no plugin needed)."""

import unittest

from wasmtime.component import Record, Variant

from embed import MAX_KEY_BYTES, MAX_VALUE_BYTES, Host, Pools, Registry, Clock, RevisionedMap
from embed import interface, mutation, record


def pre(key, revision):
    return record(key=key, revision=revision)


class RevisionedMapTest(unittest.TestCase):
    def test_a_conflicting_commit_changes_nothing_and_takes_no_revision(self):
        m = RevisionedMap()
        self.assertEqual(m.commit([pre("a", None)], [("a", b"1")]), ("committed", 1))
        before = (m.revision, dict(m._entries), list(m._keys))
        # "a" exists now: a precondition that it does not fails, and "b" is not put.
        self.assertEqual(m.commit([pre("a", None)], [("b", b"2")]), ("conflict", "a"))
        self.assertEqual((m.revision, dict(m._entries), list(m._keys)), before)
        # A precondition on a stale revision fails the same way.
        self.assertEqual(m.commit([pre("a", 7)], [("b", b"2")]), ("conflict", "a"))
        self.assertEqual(m.commit([pre("a", 1)], [("b", b"2")]), ("committed", 2))

    def test_every_key_carries_the_revision_that_last_wrote_it(self):
        m = RevisionedMap()
        m.commit([], [("a", b"1"), ("b", b"1")])
        m.commit([], [("b", b"2")])
        a, b, c = m.get(["a", "b", "c"])
        self.assertEqual((a.revision, a.value), (1, b"1"))
        self.assertEqual((b.revision, b.value), (2, b"2"))
        self.assertIsNone(c)

    def test_all_or_nothing_puts_and_deletes_including_a_missing_key(self):
        m = RevisionedMap()
        m.commit([], [("a", b"1"), ("b", b"1")])
        self.assertEqual(m.commit([pre("a", 1)], [("a", None), ("zz", None), ("c", b"3")]),
                         ("committed", 2))
        self.assertEqual([e.key for e in m.scan("", "\U0010ffff", 10)], ["b", "c"])

    def test_an_empty_commit_takes_a_revision_when_its_preconditions_hold(self):
        m = RevisionedMap()
        self.assertEqual(m.commit([pre("a", None)], []), ("committed", 1))

    def test_scan_is_ordered_half_open_and_limited(self):
        m = RevisionedMap()
        m.commit([], [(k, b"") for k in ["k3", "k1", "k2", "k10", "l", "j", "k\u00e9"]])
        self.assertEqual([e.key for e in m.scan("k", "l", 10)], ["k1", "k10", "k2", "k3", "k\u00e9"])
        self.assertEqual([e.key for e in m.scan("k", "l", 2)], ["k1", "k10"])
        self.assertEqual([e.key for e in m.scan("k10", "k3", 10)], ["k10", "k2"])
        self.assertEqual(m.scan("l", "k", 10), [])
        self.assertEqual(m.scan("k", "k", 10), [])

    def test_read_answers_its_gets_and_scans(self):
        m = RevisionedMap()
        m.commit([], [("a", b"1"), ("b", b"2"), ("c", b"3")])
        snap = m.read(["c", "x"], [record(start="a", end="c", limit=1), record(start="b", end="z", limit=5)])
        self.assertEqual([e and e.key for e in snap.entries], ["c", None])
        self.assertEqual([[e.key for e in r] for r in snap.ranges], [["a"], ["b", "c"]])

    def test_limits_are_refused_as_state_errors_and_change_nothing(self):
        host = Host(Registry([]), Clock(0), Pools([]))
        state = host.imports()[interface("reservation-state")]
        refused = state["commit"](None, [], [("h", b"\0" * (MAX_VALUE_BYTES + 1))])
        self.assertIsInstance(refused, Variant)
        self.assertEqual(refused.tag, "refused")
        self.assertIn("value", refused.payload)
        long_key = state["get"](None, ["k" * (MAX_KEY_BYTES + 1)])
        self.assertEqual(long_key.tag, "refused")
        self.assertEqual(host.state.revision, 0)
        # commit-outcome: an int when committed, the key (a str) on a conflict.
        self.assertEqual(state["commit"](None, [], [("a", b"1")]), 1)
        self.assertEqual(state["commit"](None, [pre("a", None)], [("a", b"2")]), "a")

    def test_mutations_as_wasmtime_py_gives_them(self):
        self.assertEqual(mutation(("k", b"v")), ("k", b"v"))
        self.assertEqual(mutation("k"), ("k", None))
        self.assertEqual(mutation(Variant("put", ("k", b"v"))), ("k", b"v"))
        self.assertEqual(mutation(Variant("delete", "k")), ("k", None))
        self.assertIsInstance(record(a=1), Record)


if __name__ == "__main__":
    unittest.main()
