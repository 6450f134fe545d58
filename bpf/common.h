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

/* bcc rewrites map calls from the source text, so they cannot sit inside a macro: each
 * program writes its counter update out as lookup_or_try_init + __sync_fetch_and_add
 * (increment() is a no-op on LRU and per-CPU maps) and calls note_update_failure on NULL. */

struct owner_t {
    u32 uid;
    char comm[NS_TASK_COMM_LEN];
};

/* Only valid in process context: softirq events carry whatever task was on the CPU. */
static __always_inline void current_owner(struct owner_t *owner)
{
    owner->uid = (u32)bpf_get_current_uid_gid();
    bpf_get_current_comm(owner->comm, sizeof(owner->comm));
}

#endif
