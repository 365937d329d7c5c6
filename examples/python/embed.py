#!/usr/bin/env python3
"""Embed the request-access plugin in Python with wasmtime-py.

    python embed.py request_access_guest.wasm

The plugin (a WebAssembly component of the world `plugin` in `wit/world.wit`) makes
every allocation decision and keeps nothing between calls: the host owns the
reservations, the service registry, the clock and the pools of access numbers. This
script is such a host, in plain Python:

- `RevisionedMap`: the `reservation-state` contract in memory (an ordered map whose
  every key carries the revision of the commit that last wrote it, and commits that
  check their preconditions and apply all of their mutations or none);
- `Registry`: the services allowed to ask (`demo-service` is active, `retired-service`
  is known but no longer active);
- `Clock`: the plugin's only notion of time, driven by the host (here: by hand);
- `Pools`: the options and one resource group, `DNIS`, of five numbers;
- WASI: Wasmtime's own WASI 0.2 (`io`, `cli`) from `Linker.add_wasip2()`, with
  `wasi:random/random`, where access codes come from, defined here on `os.urandom`.

It then creates a reservation with an access code, matches the call made with it, and
shows what a second call, an unknown group, an inactive service and an expired
reservation answer. Each step prints a line for a reader and a JSON line (starting
with `{`) for a program; what the plugin tells the host with each commit
(`commit-recorded` events) is printed as JSON lines too.

A real host keeps the state durable and shared between its processes (the commit's
preconditions are what makes concurrent plugins safe) and reads the wall clock.
"""

import bisect
import hashlib
import json
import os
import re
import sys

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, Variant

PACKAGE = "contact-center:request-access"
VERSION = "0.1.1"


def interface(name):
    """The full name of one of the package's interfaces."""
    return f"{PACKAGE}/{name}@{VERSION}"


# How wasmtime-py maps WIT values to Python (and back):
# - a record is an object whose attributes are the fields' WIT (kebab-case) names;
# - an option is the value or None; an enum is its case name, a str;
# - list<u8> is bytes, a tuple is a tuple, integers are int;
# - a variant or a result is a `Variant(tag, payload)` when the Python types of its
#   cases overlap (`state-error`: two strings), and else the bare payload, told apart
#   by its type (`commit-outcome`: an int when committed, a str for a conflict;
#   `result<list<...>, state-error>`: the list, or the `Variant` of the error).


def record(**fields):
    """A WIT record from Python keyword arguments (`pool_id` is the field `pool-id`)."""
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def field(r, name):
    """The field `name` (`access_number` for `access-number`) of a WIT record."""
    return getattr(r, name.replace("_", "-"))


def plain(value):
    """A WIT value as JSON-ready Python: records as dicts, variants as {tag, payload}."""
    if isinstance(value, Record):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, Variant):
        out = {"tag": value.tag}
        if value.payload is not None:
            out["payload"] = plain(value.payload)
        return out
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


# ---------------------------------------------------------------------------------
# reservation-state: the contract's in-memory reference (state/src/lib.rs in Rust).

MAX_KEYS_PER_CALL = 1024
MAX_RANGES_PER_READ = 16
MAX_KEY_BYTES = 2048
MAX_VALUE_BYTES = 64 * 1024


class Refused(Exception):
    """A call the store refuses (`state-error.refused`): it broke a limit."""


def check_keys(keys):
    if len(keys) > MAX_KEYS_PER_CALL:
        raise Refused(f"{len(keys)} keys in one call, at most {MAX_KEYS_PER_CALL}")
    for key in keys:
        size = len(key.encode("utf-8"))
        if size > MAX_KEY_BYTES:
            raise Refused(f"a key of {size} bytes, at most {MAX_KEY_BYTES}")


class RevisionedMap:
    """An ordered map of keys to (revision, value), and the last revision handed out.

    `commit` checks every precondition before it changes anything, so a commit applies
    whole or not at all; every commit takes the next revision, which every key it puts
    carries. Keys are kept sorted (Python orders str by code point, which is the byte
    order of their UTF-8, as the Rust reference orders them) for `scan`.
    """

    def __init__(self):
        self.revision = 0
        self._entries = {}  # key -> (revision, value)
        self._keys = []  # every key, ascending

    def __len__(self):
        return len(self._keys)

    def _entry(self, key):
        revision, value = self._entries[key]
        return record(key=key, value=value, revision=revision)

    def get(self, keys):
        """One entry (or None) per key, in order."""
        check_keys(keys)
        return [self._entry(k) if k in self._entries else None for k in keys]

    def scan(self, start, end, limit):
        """Up to `limit` (at most MAX_KEYS_PER_CALL) entries with start <= key < end."""
        if start >= end:
            return []
        limit = min(limit, MAX_KEYS_PER_CALL)
        out = []
        i = bisect.bisect_left(self._keys, start)
        while i < len(self._keys) and self._keys[i] < end and len(out) < limit:
            out.append(self._entry(self._keys[i]))
            i += 1
        return out

    def read(self, keys, ranges):
        """`get` of keys and `scan` of each range, all at this one revision."""
        if len(ranges) > MAX_RANGES_PER_READ:
            raise Refused(f"{len(ranges)} ranges in one read, at most {MAX_RANGES_PER_READ}")
        entries = self.get(keys)
        scans = [self.scan(r.start, r.end, r.limit) for r in ranges]
        return record(entries=entries, ranges=scans)

    def commit(self, preconditions, mutations):
        """("committed", revision) or ("conflict", key); a conflict changes nothing."""
        check_keys([p.key for p in preconditions])
        check_keys([key for key, _ in mutations])
        for _, value in mutations:
            if value is not None and len(value) > MAX_VALUE_BYTES:
                raise Refused(f"a value of {len(value)} bytes, at most {MAX_VALUE_BYTES}")
        for p in preconditions:
            current = self._entries.get(p.key)
            if (current[0] if current else None) != p.revision:
                return ("conflict", p.key)
        self.revision += 1
        for key, value in mutations:
            if value is None:  # delete: removing a missing key is not an error
                if self._entries.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:  # put
                if key not in self._entries:
                    bisect.insort(self._keys, key)
                self._entries[key] = (self.revision, bytes(value))
        return ("committed", self.revision)


def mutation(m):
    """A WIT `mutation` as (key, value), value None for `delete`."""
    if isinstance(m, Variant):  # in case the cases ever come tagged
        return (m.payload[0], m.payload[1]) if m.tag == "put" else (m.payload, None)
    if isinstance(m, tuple):  # put(tuple<string, list<u8>>)
        return (m[0], m[1])
    return (m, None)  # delete(string)


# ---------------------------------------------------------------------------------
# The other imports: registry, clock, resource groups.


class Registry:
    """The services that may ask for access information."""

    def __init__(self, active, inactive=()):
        self.active = set(active)
        self.inactive = set(inactive)

    def is_active(self, service_id):
        return service_id in self.active


class Clock:
    """Milliseconds since the Unix epoch, moved by the host (a real host reads the wall
    clock: `int(time.time() * 1000)`)."""

    def __init__(self, now_ms):
        self.now_ms = now_ms

    def advance(self, seconds):
        self.now_ms += int(seconds * 1000)


def digits(number):
    return re.sub(r"\D", "", number)


class Group:
    """One resource group: a pool of access numbers and how it lends them."""

    def __init__(self, name, numbers, strategy="round-robin", booking_expiration_timeout=None):
        self.name = name
        self.numbers = list(numbers)
        self.strategy = strategy  # "round-robin" or "random"
        self.booking_expiration_timeout = booking_expiration_timeout
        # The 0.1.0 behaviour: numbers lent whole, at once again, matched until expiry.
        self.policy = record(
            reuse_cooldown=0,
            match_grace=0,
            fallback_group=None,
            sticky_memory=0,
            reservations_per_number=1,
            wrong_code_limit=0,
            wrong_code_window=0,
            prefer_caller_prefix=0,
        )
        self.lease = record(max_lifetime=3600, sliding_expiry=False)
        self._index = {digits(n): i for i, n in enumerate(self.numbers)}
        # A fingerprint of the numbers and of the reservations each carries: the
        # plugin notices when the pool changes under its reservations.
        seats = field(self.policy, "reservations_per_number")
        fingerprint = hashlib.sha256(("\n".join(self.numbers) + f"\n{seats}").encode())
        self.pool_id = int.from_bytes(fingerprint.digest()[:8], "big")

    def info(self):
        return record(
            name=self.name,
            strategy=self.strategy,
            booking_expiration_timeout=self.booking_expiration_timeout,
            size=len(self.numbers),
            pool_id=self.pool_id,
        )

    def index_of(self, number):
        """Digits are compared, not formatting."""
        return self._index.get(digits(number))


class Pools:
    """`resource-groups`: the global options and the configured groups."""

    def __init__(self, groups, access_code_length=6, booking_expiration_timeout=30, max_code_attempts=3):
        self.groups = {g.name: g for g in groups}
        self.options = record(
            access_code_length=access_code_length,
            booking_expiration_timeout=booking_expiration_timeout,
            max_code_attempts=max_code_attempts,
        )


# ---------------------------------------------------------------------------------
# The host: every import of the plugin, defined in a wasmtime-py component linker.


class Host:
    def __init__(self, registry, clock, pools, state=None, on_event=None):
        self.registry = registry
        self.clock = clock
        self.pools = pools
        self.state = state if state is not None else RevisionedMap()
        self.on_event = on_event or (lambda event: None)

    # Each import is called as f(store, *args); what it answers is lowered by its WIT type.

    def _state_call(self, f):
        try:
            return f()
        except Refused as why:
            return Variant("refused", str(why))

    def _commit(self, preconditions, mutations, events=()):
        def run():
            outcome, what = self.state.commit(preconditions, [mutation(m) for m in mutations])
            if outcome == "committed":
                for event in events:  # told to the host only once committed
                    self.on_event(event)
                return what  # commit-outcome.committed(u64): an int
            return str(what)  # commit-outcome.conflict(string): a str

        return self._state_call(run)

    def imports(self):
        """{interface: {function: callable}} for every non-WASI import."""
        groups = self.pools.groups
        return {
            interface("service-registry"): {
                # result<bool, registry-error>: a bool, or the error's text (its one
                # case, `unavailable`) when the registry cannot be asked.
                "is-active": lambda _s, service_id: self.registry.is_active(service_id),
            },
            interface("clock"): {
                "now": lambda _s: self.clock.now_ms,
            },
            interface("resource-groups"): {
                "options": lambda _s: self.pools.options,
                "group": lambda _s, name: groups[name].info() if name in groups else None,
                "number-at": lambda _s, name, index: (
                    groups[name].numbers[index]
                    if name in groups and index < len(groups[name].numbers)
                    else None
                ),
                "index-of": lambda _s, name, number: (
                    groups[name].index_of(number) if name in groups else None
                ),
                "policy": lambda _s, name: groups[name].policy if name in groups else None,
                "lease-policy": lambda _s, name: groups[name].lease if name in groups else None,
            },
            interface("reservation-state"): {
                "get": lambda _s, keys: self._state_call(lambda: self.state.get(keys)),
                "scan": lambda _s, start, end, limit: self._state_call(
                    lambda: self.state.scan(start, end, limit)
                ),
                "read": lambda _s, keys, ranges: self._state_call(
                    lambda: self.state.read(keys, ranges)
                ),
                "commit": lambda _s, pre, muts: self._commit(pre, muts),
                "commit-recorded": lambda _s, pre, muts, events: self._commit(pre, muts, events),
            },
        }


def wasi_random():
    """`wasi:random/random`: the plugin draws its access codes (and random picks) here,
    so it must be a CSPRNG: the operating system's."""
    return {
        "get-random-bytes": lambda _s, n: os.urandom(n),
        "get-random-u64": lambda _s: int.from_bytes(os.urandom(8), "little"),
    }


def linker_for(engine, host):
    linker = Linker(engine)
    # WASI 0.2 (io streams and errors, cli environment/exit/std*/terminal-*): Wasmtime's,
    # configured by the store's WasiConfig (no arguments, no environment, stderr only).
    linker.add_wasip2()
    defined = dict(host.imports())
    defined["wasi:random/random@0.2.6"] = wasi_random()
    # Replaces Wasmtime's `wasi:random/random` by the one above.
    linker.allow_shadowing = True
    with linker.root() as root:
        for name, funcs in defined.items():
            with root.add_instance(name) as instance:
                for func, f in funcs.items():
                    instance.add_func(func, f)
    linker.allow_shadowing = False
    return linker


class Plugin:
    """The plugin's exports, as Python calls answering (ok, err)."""

    def __init__(self, engine, wasm_path, host):
        self.store = Store(engine)
        wasi = WasiConfig()
        wasi.inherit_stderr()  # a plugin's panic message, if ever
        self.store.set_wasi(wasi)
        component = Component.from_file(engine, wasm_path)
        self.instance = linker_for(engine, host).instantiate(self.store, component)

    def _func(self, iface, name):
        parent = self.instance.get_export_index(self.store, interface(iface))
        if parent is None:
            raise LookupError(f"the plugin exports no {interface(iface)}")
        index = self.instance.get_export_index(self.store, name, parent)
        func = self.instance.get_func(self.store, index) if index is not None else None
        if func is None:
            raise LookupError(f"{interface(iface)} has no function {name}")
        return func

    def _call(self, iface, name, *args):
        answer = self._func(iface, name)(self.store, *args)
        # result<T, error>: a `Variant` of tag ok/err when T and error look alike in
        # Python (placement.place's two records), else T itself or the error's Variant.
        if isinstance(answer, Variant) and answer.tag in ("ok", "err"):
            return (answer.payload, None) if answer.tag == "ok" else (None, answer.payload)
        if isinstance(answer, Variant):
            return (None, answer)
        return (answer, None)

    def create(self, service_id, resource_group, provide_code=False, phone_number=None,
               booking_expiration_timeout=None):
        request = record(
            service_id=service_id,
            resource_group=resource_group,
            provide_code=provide_code,
            phone_number=phone_number,
            booking_expiration_timeout=booking_expiration_timeout,
        )
        return self._call("request-access", "create", request)

    def match(self, access_number, access_code=None, phone_number=None):
        request = record(access_number=access_number, access_code=access_code,
                         phone_number=phone_number)
        return self._call("request-access", "match-access", request)

    def release(self, service_id, resource_group):
        return self._call("request-access", "release", service_id, resource_group)

    def pool_status(self, resource_group):
        return self._call("request-access", "pool-status", resource_group)


# ---------------------------------------------------------------------------------
# The demonstration.


def describe_error(err):
    """An `error` for a reader: its case, and what it carries."""
    if err.payload is None:
        return err.tag
    if isinstance(err.payload, Record):
        return f"{err.tag}: {field(err.payload, 'field')}: {field(err.payload, 'reason')}"
    return f"{err.tag}: {err.payload}"


def step(name, ok, err, readable):
    """Print one step: a line for a reader, then its JSON line."""
    print(f"{name}: {readable if err is None else describe_error(err)}")
    line = {"step": name}
    if err is None:
        line["ok"] = plain(ok)
    else:
        line["err"] = plain(err)
    print(json.dumps(line), flush=True)
    return ok, err


def show_event(event):
    line = {"event": event.kind}
    line.update({k: v for k, v in plain(event).items() if k != "kind" and v is not None})
    print(json.dumps(line), flush=True)


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} request_access_guest.wasm", file=sys.stderr)
        return 2
    group = Group("DNIS", [f"+1800555010{i}" for i in range(5)], strategy="round-robin")
    host = Host(
        registry=Registry(active=["demo-service"], inactive=["retired-service"]),
        clock=Clock(1_767_225_600_000),  # 2026-01-01T00:00:00Z
        pools=Pools([group], access_code_length=6, booking_expiration_timeout=30),
        on_event=show_event,
    )
    plugin = Plugin(Engine(), argv[1], host)

    # 1. The service asks for an access number and a code for its caller.
    info, err = plugin.create("demo-service", "DNIS", provide_code=True)
    step("create", info, err, (
        f"demo-service dials {field(info, 'access_number')} and types "
        f"{field(info, 'access_code')} within {field(info, 'expiration_time')} s"
        if err is None else ""
    ))
    if err is not None:
        return 1
    number, code = field(info, "access_number"), field(info, "access_code")

    # 2. The call arrives on that number with that code: it belongs to demo-service.
    host.clock.advance(5)
    matched, err = plugin.match(number, code)
    step("match", matched, err,
         f"the call to {number} is for {field(matched, 'service_id')}" if err is None else "")

    # 3. The same call again: the match released the reservation.
    again, err = plugin.match(number, code)
    step("match-again", again, err, f"matched again to {plain(again)}")

    # 4. Errors the caller gets, each telling why.
    unknown, err = plugin.create("demo-service", "NO-SUCH-GROUP", provide_code=True)
    step("unknown-group", unknown, err, f"unexpectedly got {plain(unknown)}")
    retired, err = plugin.create("retired-service", "DNIS", provide_code=True)
    step("inactive-service", retired, err, f"unexpectedly got {plain(retired)}")

    # 5. Time is the host's: a reservation not called within its timeout expires.
    short, err = plugin.create("demo-service", "DNIS", booking_expiration_timeout=10)
    step("create-short", short, err,
         f"{field(short, 'access_number')} for {field(short, 'expiration_time')} s"
         if err is None else "")
    host.clock.advance(11)
    if err is None:
        late, err = plugin.match(field(short, "access_number"))
        step("match-expired", late, err, f"matched after expiry to {plain(late)}")
    status, err = plugin.pool_status("DNIS")
    step("pool-status", status, err,
         f"{field(status, 'free')} of {field(status, 'size')} numbers free, "
         f"{field(status, 'live')} live" if err is None else "")
    print(f"state: {len(host.state)} keys at revision {host.state.revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
