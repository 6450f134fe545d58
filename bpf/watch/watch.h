/* Watched ports: the few connections and datagrams that match a `watch:` rule are sent to
 * userspace as events (exporter/watch/ writes them to the event log and runs hooks); all
 * other traffic never leaves the kernel's counters.
 *
 * Pasted once into the module, after common.h, when a collector emits watch events (its map
 * calls are then rewritten by bcc like the collectors' own); those collectors share its maps
 * and its one event buffer. Userspace fills `watch_rules` (an LPM trie over {protocol,
 * direction, port, remote address}) and `watch_limits`.
 */

/* WATCH_MAX_RULES, WATCH_DIR_* and WATCH_PROTO_* come from exporter/watch/rules.py as defines. */

/* The trie's data is {protocol, direction, port} (always matched whole: prefixlen >= 32) then
 * the remote address, IPv4 as ::ffff:a.b.c.d; a rule without CIDRs matches any address. The
 * value is the first rule (in config order) that covers the prefix. */
struct watch_key_t {
    u32 prefixlen;
    u8 protocol;
    u8 direction;
    u16 port;
    u8 addr[16];
};

struct watch_event_t {
    u64 ktime_ns;
    u64 cgroup_id;
    u32 pid;  /* tgid; 0 when no process is known (inbound) */
    u32 uid;  /* NO_UID when no process is known */
    u32 rule;
    u16 local_port;
    u16 remote_port;
    u8 protocol;
    u8 direction;
    u8 result;
    u8 has_process;
    u8 local_addr[16];  /* IPv4 as ::ffff:a.b.c.d */
    u8 remote_addr[16];
    char comm[NS_TASK_COMM_LEN];
    /* Read from the task at the event (watch_current_process), so they describe the process
     * image that made it, even after an exec or its exit; has_task_facts says they were read. */
    u32 gid;
    u32 euid;
    u32 ppid;  /* the real parent's tgid */
    u16 cmdline_len;  /* bytes of cmdline read, NUL-separated arguments */
    u8 has_task_facts;
    u8 reserved;
    char parent_comm[NS_TASK_COMM_LEN];
    char cmdline[WATCH_CMDLINE_LEN];
};

/* One-second windows per rule: the kernel drops what is clearly over the limit so a flood
 * never reaches userspace; userspace applies the exact limit to what gets through (two CPUs
 * may both start a new window). */
struct watch_window_t {
    u64 second;
    u64 admitted;
};

BPF_LPM_TRIE(watch_rules, struct watch_key_t, u32, WATCH_RULES_MAP_SIZE);
BPF_ARRAY(watch_limits, u32, WATCH_MAX_RULES);  /* events per second; 0: unlimited */
BPF_ARRAY(watch_windows, struct watch_window_t, WATCH_MAX_RULES);
BPF_PERCPU_ARRAY(watch_matched, u64, WATCH_MAX_RULES);
BPF_PERCPU_ARRAY(watch_suppressed, u64, WATCH_MAX_RULES);
BPF_PERF_OUTPUT(watch_events);

static __always_inline void watch_address(u8 *out, u16 family, const u8 *v4, const u8 *v6)
{
    if (family == 2) {
        __builtin_memset(out, 0, 10);
        out[10] = 0xff;
        out[11] = 0xff;
        __builtin_memcpy(out + 12, v4, 4);
    } else {
        __builtin_memcpy(out, v6, 16);
    }
}

/* Whether a rule watches the event's remote_addr on this port; if so, the event is marked with
 * the rule, protocol and direction. */
static __always_inline int watch_match(struct watch_event_t *event, u8 protocol, u8 direction,
                                       u16 port)
{
    /* No rule of the protocol (WATCH_*_RULES: how many): no trie lookup. The protocol is a
     * constant at each call, so the compiler drops the lookup and the event it would fill,
     * e.g. for every UDP datagram under the default rules (telnet, TCP only). */
    if (!(protocol == WATCH_PROTO_TCP ? WATCH_TCP_RULES : WATCH_UDP_RULES))
        return 0;
    struct watch_key_t key = {};
    key.prefixlen = 32 + 128;
    key.protocol = protocol;
    key.direction = direction;
    key.port = port;
    __builtin_memcpy(key.addr, event->remote_addr, 16);
    u32 *rule = watch_rules.lookup(&key);
    if (!rule)
        return 0;
    event->rule = *rule;
    event->protocol = protocol;
    event->direction = direction;
    return 1;
}

static __always_inline int watch_admit(u32 rule)
{
    u64 *matched = watch_matched.lookup(&rule);
    if (matched)
        (*matched)++;
    u32 *limit = watch_limits.lookup(&rule);
    struct watch_window_t *window = watch_windows.lookup(&rule);
    if (!limit || !window || *limit == 0)
        return 1;
    u64 second = bpf_ktime_get_ns() / 1000000000ULL;
    if (window->second != second) {
        window->second = second;
        window->admitted = 0;
    }
    if (__sync_fetch_and_add(&window->admitted, 1) < *limit)
        return 1;
    u64 *suppressed = watch_suppressed.lookup(&rule);
    if (suppressed)
        (*suppressed)++;
    return 0;
}

#ifdef WATCH_TASK_FACTS
/* The current task's euid, parent and arguments, at the struct offsets the running
 * kernel's BTF gives (exporter/kernel/tasks.py): what /proc would say now, but now is the
 * event, not a later moment when the pid may run another program or none. */
static __always_inline void watch_task_facts(struct watch_event_t *event)
{
    void *task = (void *)bpf_get_current_task();
    void *cred = 0, *parent = 0, *mm = 0;
    if (bpf_probe_read_kernel(&cred, sizeof(cred), task + TASK_CRED_OFF) || !cred)
        return;
    if (bpf_probe_read_kernel(&event->euid, sizeof(event->euid), cred + CRED_EUID_OFF))
        return;
    if (bpf_probe_read_kernel(&parent, sizeof(parent), task + TASK_REAL_PARENT_OFF) || !parent)
        return;
    bpf_probe_read_kernel(&event->ppid, sizeof(event->ppid), parent + TASK_TGID_OFF);
    bpf_probe_read_kernel(event->parent_comm, sizeof(event->parent_comm), parent + TASK_COMM_OFF);
    event->has_task_facts = 1;
    if (bpf_probe_read_kernel(&mm, sizeof(mm), task + TASK_MM_OFF) || !mm)
        return;  /* a kernel thread: no arguments */
    u64 arg_start = 0, arg_end = 0;
    bpf_probe_read_kernel(&arg_start, sizeof(arg_start), mm + MM_ARG_START_OFF);
    bpf_probe_read_kernel(&arg_end, sizeof(arg_end), mm + MM_ARG_END_OFF);
    if (arg_end <= arg_start)
        return;
    u64 length = arg_end - arg_start;
    if (length > WATCH_CMDLINE_LEN)
        length = WATCH_CMDLINE_LEN;  /* truncated; userspace marks it */
    if (bpf_probe_read_user(event->cmdline, length, (void *)arg_start) == 0)
        event->cmdline_len = length;
}
#endif

/* Fills the process part of an event; only valid in process context. */
static __always_inline void watch_current_process(struct watch_event_t *event)
{
    u64 uid_gid = bpf_get_current_uid_gid();
    event->pid = bpf_get_current_pid_tgid() >> 32;
    event->uid = (u32)uid_gid;
    event->gid = uid_gid >> 32;
    event->cgroup_id = bpf_get_current_cgroup_id();
    event->has_process = 1;
    bpf_get_current_comm(event->comm, sizeof(event->comm));
#ifdef WATCH_TASK_FACTS
    watch_task_facts(event);
#endif
}

/* Counts the match, applies the rate limit and sends the event: event->rule is the index. */
static __always_inline void watch_emit(void *ctx, struct watch_event_t *event)
{
    if (!watch_admit(event->rule))
        return;
    event->ktime_ns = bpf_ktime_get_ns();
    watch_events.perf_submit(ctx, event, sizeof(*event));
}
