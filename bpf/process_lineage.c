/* Who started whom, for the watch event log's ppid and parent comm, kept after processes exit.
 *
 * sched_process_fork runs in the parent: its tgid is the child's parent (the kernel's
 * child_pid is the new task's id, which for a new process is its tgid), and its name at that
 * moment is the parent's name. sched_process_exec runs in the process after its name changed.
 * A watched event is looked up here by userspace a few milliseconds later, when a short-lived
 * client has often exited already. Thread creation also passes sched_process_fork; those
 * entries are never looked up and age out of the LRU.
 */
/* common.h is prepended by the loader: bcc rewrites map calls only in the main file. */

/* MAP_* comes from exporter/collectors/watch.py as a define. */

struct name_t {
    char comm[NS_TASK_COMM_LEN];
};

BPF_TABLE("lru_hash", u32, u32, parents, LINEAGE_MAP_SIZE);
BPF_TABLE("lru_hash", u32, struct name_t, names, LINEAGE_MAP_SIZE);

static __always_inline void remember_name(u32 pid)
{
    struct name_t name = {};
    bpf_get_current_comm(name.comm, sizeof(name.comm));
    if (names.update(&pid, &name))
        note_update_failure(MAP_NAMES);
}

#ifdef HAVE_TP_sched_sched_process_fork
NS_HANDLER(sched, sched_process_fork)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    u32 child = args->child_pid;
    if (parents.update(&child, &parent))
        note_update_failure(MAP_PARENTS);
    remember_name(parent);
    return 0;
}
#endif

#ifdef HAVE_TP_sched_sched_process_exec
NS_HANDLER(sched, sched_process_exec)
{
    remember_name(bpf_get_current_pid_tgid() >> 32);
    return 0;
}
#endif
