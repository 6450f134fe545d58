"""The series budget and port policy: bounded series, exact sums, monotonic counters."""

from __future__ import annotations

from exporter.config import CardinalityConfig, PortsConfig
from exporter.core.cardinality import PORT_FOLD_ALWAYS, PORT_FOLD_REFUSED_INBOUND, SeriesBudget
from exporter.core.snapshot import MetricFamily

NAMES = ("direction", "port", "comm", "uid", "result")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budget(clock: Clock, series: int = 3, idle: float = 60.0, **ports) -> SeriesBudget:
    return SeriesBudget(
        CardinalityConfig(series_per_metric=series, idle_seconds=idle),
        PortsConfig(**ports),
        clock=clock,
        ephemeral=lambda: (32768, 60999),
    )


def connections(samples: dict[tuple[str, ...], float], increments: bool = True) -> MetricFamily:
    return MetricFamily(
        "netsnoop_tcp_connections",
        "counter",
        "x",
        NAMES,
        dict(samples),
        increments=increments,
        bounded_labels=("direction", "result"),
    )


def samples(families: list[MetricFamily], name: str = "netsnoop_tcp_connections") -> dict:
    return next(f for f in families if f.name == name).samples


def test_past_the_budget_series_fold_into_other_and_the_sum_stays_exact():
    guard = budget(Clock(), series=3)
    read = {("outbound", str(1000 + i), f"p{i}", "0", "refused"): 1.0 for i in range(10)}
    out = guard.apply([connections(read)])
    series = samples(out)
    assert len(series) == 4  # three of their own, one overflow
    assert series[("outbound", "other", "other", "other", "refused")] == 7
    assert sum(series.values()) == 10
    assert samples(out, "netsnoop_series_overflow") == {("netsnoop_tcp_connections_total",): 7}


def test_counters_accumulate_across_reads_and_never_go_backwards():
    guard = budget(Clock(), series=2)
    key = ("outbound", "1000", "a", "0", "established")
    guard.apply([connections({key: 2})])
    out = guard.apply([connections({key: 3, ("outbound", "1001", "b", "0", "refused"): 1})])
    assert samples(out)[key] == 5
    out = guard.apply([connections({})])  # a drained map with nothing new
    assert samples(out)[key] == 5


def test_running_totals_become_increments_and_a_reset_restarts_from_zero():
    guard = budget(Clock())
    key = ("inbound", "22", "sshd", "0", "accepted")
    guard.apply([connections({key: 5}, increments=False)])
    guard.apply([connections({key: 8}, increments=False)])
    out = guard.apply([connections({key: 2}, increments=False)])  # the source restarted
    assert samples(out)[key] == 10


def test_port_policy_keeps_listed_ports_and_folds_scans_and_ephemeral_ports():
    guard = budget(Clock(), series=100, keep=[23, "8000-8010"])
    read = {
        ("inbound", "23", "", "", "refused"): 1,
        ("inbound", "8005", "", "", "refused"): 1,
        ("inbound", "9999", "", "", "refused"): 1,
        ("inbound", "9998", "", "", "refused"): 1,
        ("inbound", "9999", "srv", "0", "accepted"): 1,
        ("outbound", "40000", "c", "0", "established"): 1,
        ("outbound", "9999", "c", "0", "established"): 1,
    }
    series = samples(guard.apply([connections(read)]))
    assert series == {
        ("inbound", "23", "", "", "refused"): 1,
        ("inbound", "8005", "", "", "refused"): 1,
        ("inbound", "other", "", "", "refused"): 2,
        ("inbound", "9999", "srv", "0", "accepted"): 1,
        ("outbound", "other", "c", "0", "established"): 1,
        ("outbound", "9999", "c", "0", "established"): 1,
    }


def test_folding_keeps_a_listed_port():
    guard = budget(Clock(), series=1)
    read = {("outbound", "22", f"p{i}", "0", "established"): 1 for i in range(5)}
    series = samples(guard.apply([connections(read)]))
    assert series[("outbound", "22", "other", "other", "established")] == 4


def test_policy_can_be_turned_off():
    guard = budget(Clock(), fold_ephemeral=False, fold_refused_inbound=False)
    read = {("inbound", "40000", "", "", "refused"): 1}
    assert samples(guard.apply([connections(read)])) == read


def test_idle_series_expire_and_free_their_place():
    clock = Clock()
    guard = budget(clock, series=1, idle=60)
    quiet = ("outbound", "1000", "quiet", "0", "established")
    busy = ("outbound", "1001", "busy", "0", "established")
    guard.apply([connections({quiet: 1})])
    clock.now += 61
    series = samples(guard.apply([connections({busy: 1})]))
    assert quiet not in series and series[busy] == 1


def test_an_active_series_is_never_pushed_out_by_a_flood():
    clock = Clock()
    guard = budget(clock, series=1, idle=60)
    mine = ("outbound", "1000", "mine", "0", "established")
    guard.apply([connections({mine: 1})])
    for step in range(5):
        clock.now += 30
        flood = {("outbound", str(2000 + i), f"f{step}{i}", "0", "refused"): 1 for i in range(50)}
        guard.apply([connections({**flood, mine: 1})])
    assert samples(guard.apply([connections({})]))[mine] == 6


def test_reconfigure_keeps_totals():
    guard = budget(Clock(), series=10)
    key = ("outbound", "1000", "a", "0", "established")
    guard.apply([connections({key: 4})])
    guard.configure(CardinalityConfig(series_per_metric=1), PortsConfig(keep=[1000]))
    assert samples(guard.apply([connections({key: 1})]))[key] == 5


def test_gauges_pass_through():
    gauge = MetricFamily("netsnoop_queue", "gauge", "x", ("port",), {("1",): 3.0})
    assert budget(Clock()).apply([gauge])[0] is gauge


def test_kernel_flags_fold_each_port_as_the_userspace_policy_does():
    policy = budget(Clock(), keep=[23, "8000-8010", 40000]).ports
    flags = policy.kernel_flags()
    assert len(flags) == 65536
    assert flags[0] == 0  # the kernel's marker for "other" never folds again
    assert flags[23] == flags[8005] == flags[40000] == 0  # kept
    assert flags[9999] == PORT_FOLD_REFUSED_INBOUND  # only when nothing listens there
    assert flags[40001] == PORT_FOLD_ALWAYS | PORT_FOLD_REFUSED_INBOUND  # ephemeral
    for port in (23, 9999, 40001):  # both sides agree, port by port
        for direction, result in (("inbound", "refused"), ("outbound", "established")):
            folded_by_kernel = flags[port] & PORT_FOLD_ALWAYS or (
                direction == "inbound" and flags[port] & PORT_FOLD_REFUSED_INBOUND
            )
            folded = policy.port_label(str(port), direction, result) == "other"
            assert folded == bool(folded_by_kernel)


def test_kernel_flags_follow_a_policy_turned_off():
    flags = budget(Clock(), fold_ephemeral=False, fold_refused_inbound=False).ports.kernel_flags()
    assert flags == bytes(65536)


def test_a_series_reported_at_zero_is_born_at_zero_with_its_creation_time():
    clock, wall = Clock(), [1_700_000_000.0]
    guard = SeriesBudget(
        CardinalityConfig(series_per_metric=2, idle_seconds=60),
        PortsConfig(),
        clock=clock,
        ephemeral=lambda: (32768, 60999),
        wall_clock=lambda: wall[0],
    )
    drops = MetricFamily("netsnoop_listen_drops", "counter", "x", ("port",), increments=True)
    drops.add(("8080",), 0)
    out = guard.apply([drops])[0]
    assert out.samples == {("8080",): 0} and out.created == {("8080",): 1_700_000_000.0}
    clock.now += 50
    wall[0] += 50
    drops.samples = {("8080",): 3.0, ("9090",): 0.0, ("9091",): 0.0}
    out = guard.apply([drops])[0]
    # the first drops land in a series Prometheus already knows at 0; the budget's last
    # place goes to 9090, and a series at zero never takes an overflow place
    assert out.samples == {("8080",): 3, ("9090",): 0}
    assert out.created == {("8080",): 1_700_000_000.0, ("9090",): 1_700_000_050.0}
    clock.now += 100  # past idle_seconds, but still reported: alive though nothing was added
    assert guard.apply([drops])[0].samples[("9090",)] == 0


def test_a_series_born_first_but_incremented_since_outlives_a_later_quiet_one():
    clock = Clock()
    guard = budget(clock, series=2, idle=60)
    early = ("outbound", "1000", "early", "0", "established")
    later = ("outbound", "1001", "later", "0", "established")
    guard.apply([connections({early: 1})])
    clock.now += 10
    guard.apply([connections({later: 1})])
    clock.now += 40
    guard.apply([connections({early: 1})])
    clock.now += 25  # later idle for 65 s, early for 25 s
    assert samples(guard.apply([connections({})])) == {early: 2}
