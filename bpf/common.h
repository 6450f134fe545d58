/* Helpers shared by every netsnoop BPF program.
 *
 * The loader pastes this file in front of each program rather than #including it, because
 * bcc rewrites map calls (map.lookup(...)) only in the main source text. Before it come the
 * tracepoint argument structs (struct tp_<category>_<event>), built from
 * the running kernel's format files, and defines HAVE_TP_<category>_<event> for each tracepoint
 * that exists, so a program compiles only the handlers its kernel can attach.
 */
#ifndef NETSNOOP_COMMON_H
#define NETSNOOP_COMMON_H

#define NS_TASK_COMM_LEN 16

/* Index = the map's position in the collector's MAPS list; per-CPU so no atomics are needed. */
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

#endif
