/* Helpers shared by every netsnoop BPF program.
 *
 * The loader (exporter/kernel/bpf.py) compiles the sources of all enabled collectors as one
 * bcc module: this file once, each shared header (socket_owners.h, watch.h...) once, then each
 * collector's source, pasted rather than #included because bcc rewrites map calls
 * (map.lookup(...)) only in the main source text. Before it come the tracepoint argument
 * structs (struct tp_<category>_<event>), built from the running kernel's format files; each
 * section then sees HAVE_TP_<category>_<event> for the tracepoints its handlers can use, and
 * its collector's values as defines, #undef'd after it.
 */
#ifndef NETSNOOP_COMMON_H
#define NETSNOOP_COMMON_H

/* A handler of a tracepoint: an inlined part of the one program the loader writes per
 * tracepoint, which calls every enabled collector's handler in turn, so an event costs one
 * program run however many collectors count it. NS_PART (the section's collector or shared
 * header) makes the names distinct: tcp_connections__on_inet_sock_set_state. */
#define NS_PASTE_(part, function) part##__##function
#define NS_PASTE(part, function) NS_PASTE_(part, function)
#define NS_HANDLER(category, event) \
    static __always_inline int NS_PASTE(NS_PART, on_##event)(struct tp_##category##_##event *args)

#define NS_TASK_COMM_LEN 16

/* Index = MAP_<NAME>, the map's position among the module's maps; per-CPU: no atomics. */
BPF_PERCPU_ARRAY(map_update_failures, u64, NS_MAP_COUNT);

static __always_inline void note_update_failure(u32 map_index)
{
    u64 *failures = map_update_failures.lookup(&map_index);
    if (failures)
        (*failures)++;
}

/* Counters are keyed by an epoch that userspace bumps every few seconds; keys of an older
 * epoch no longer change, so userspace can read them a last time and delete them without
 * losing an increment (exporter/kernel/counters.py, docs/security.md). */
BPF_ARRAY(counter_epoch, u32, 1);

static __always_inline u32 current_epoch(void)
{
    u32 zero = 0;
    u32 *epoch = counter_epoch.lookup(&zero);
    return epoch ? *epoch : 0;
}

#ifdef NS_PORT_FOLD
/* The port policy (docs/security.md), applied here rather than in userspace so that a scan of
 * every port costs a bounded number of keys: userspace writes one flag byte per port
 * (exporter/core/cardinality.py PortPolicy.kernel_flags), and a folded port is counted as port 0,
 * which userspace shows as port="other". */
/* PORT_OTHER, PORT_FOLD_ALWAYS (ephemeral and not kept) and PORT_FOLD_REFUSED_INBOUND (not
 * kept: folded when nothing listens there) come from exporter/core/cardinality.py as defines. */
BPF_ARRAY(port_fold, u8, 65536);

static __always_inline u16 fold_port(u16 port, int refused_inbound)
{
    u32 index = port;
    u8 *flags = port_fold.lookup(&index);
    if (!flags)
        return port;
    if (*flags & PORT_FOLD_ALWAYS)
        return PORT_OTHER;
    if (refused_inbound && (*flags & PORT_FOLD_REFUSED_INBOUND))
        return PORT_OTHER;
    return port;
}
#endif

/* bcc rewrites map calls from the source text, so they cannot sit inside a macro: each
 * program writes its counter update out as lookup_or_try_init + __sync_fetch_and_add
 * (increment() is a no-op on LRU and per-CPU maps) and calls note_update_failure on NULL. */

struct owner_t {
    u32 uid;
    char comm[NS_TASK_COMM_LEN];
    u64 cgroup_id;  /* cgroup v2 id (its directory's inode); 0 unless NS_CGROUP_LABELS */
};

/* Only valid in process context: softirq events carry whatever task was on the CPU. */
static __always_inline void current_owner(struct owner_t *owner)
{
    owner->uid = (u32)bpf_get_current_uid_gid();
    bpf_get_current_comm(owner->comm, sizeof(owner->comm));
#ifdef NS_CGROUP_LABELS
    /* Which container or pod the process runs in; left 0 when the labels are off, so the
     * counters keep their cardinality. */
    owner->cgroup_id = bpf_get_current_cgroup_id();
#endif
}

/* The inode of the socket's network namespace (what /proc/<pid>/ns/net links to); 0 without
 * the BTF offsets (SKC_NET_OFF, NET_NS_INUM_OFF), which the collector passes when it has them. */
static __always_inline u32 socket_netns(u64 skaddr)
{
    u32 inum = 0;
#if defined(SKC_NET_OFF) && defined(NET_NS_INUM_OFF)
    u64 net = 0;
    if (!bpf_probe_read_kernel(&net, sizeof(net), (void *)(skaddr + SKC_NET_OFF)) && net)
        bpf_probe_read_kernel(&inum, sizeof(inum), (void *)(net + NET_NS_INUM_OFF));
#endif
    return inum;
}

#endif
