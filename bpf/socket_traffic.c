/* Bytes that processes pass through TCP and UDP sockets, per direction, protocol, comm and uid.
 *
 * sock:sock_send_length and sock:sock_recv_length (6.3+) fire once per send/receive call, in
 * the calling process's context, with the call's result: bytes moved, or a negative errno.
 * A receive with MSG_PEEK leaves the data queued for the next call, so it is skipped.
 */
/* common.h is prepended by the loader: bcc rewrites map calls only in the main file. */

#define AF_INET_NUM 2
#define AF_INET6_NUM 10
#define IPPROTO_TCP_NUM 6
#define IPPROTO_UDP_NUM 17
#define MSG_PEEK_FLAG 2

/* DIR_* and MAP_* come from exporter/collectors/socket_traffic.py as defines. */

struct traffic_key_t {
    u32 uid;
    u8 direction;
    u8 protocol;
    u16 reserved;  /* explicit, so the key has no padding bytes */
    char comm[NS_TASK_COMM_LEN];
    u64 cgroup_id;  /* 0 unless the pod/container labels are on (NS_CGROUP_LABELS) */
    u32 epoch;
};

BPF_HASH(socket_bytes, struct traffic_key_t, u64, SOCKET_BYTES_MAP_SIZE);

static __always_inline void count_bytes(u8 direction, u16 family, u16 protocol, s32 ret)
{
    if (ret <= 0 || (family != AF_INET_NUM && family != AF_INET6_NUM))
        return;
    if (protocol != IPPROTO_TCP_NUM && protocol != IPPROTO_UDP_NUM)
        return;
    struct traffic_key_t key = {};
    key.uid = (u32)bpf_get_current_uid_gid();
    key.direction = direction;
    key.protocol = protocol;
    key.epoch = current_epoch();
    bpf_get_current_comm(key.comm, sizeof(key.comm));
#ifdef NS_CGROUP_LABELS
    key.cgroup_id = bpf_get_current_cgroup_id();
#endif
    u64 zero = 0;
    u64 *value = socket_bytes.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, (u64)ret);
    else
        note_update_failure(MAP_SOCKET_BYTES);
}

#ifdef HAVE_TP_sock_sock_send_length
NS_HANDLER(sock, sock_send_length)
{
    count_bytes(DIR_SENT, args->family, args->protocol, args->ret);
    return 0;
}
#endif

#ifdef HAVE_TP_sock_sock_recv_length
NS_HANDLER(sock, sock_recv_length)
{
    if (args->flags & MSG_PEEK_FLAG)
        return 0;
    count_bytes(DIR_RECEIVED, args->family, args->protocol, args->ret);
    return 0;
}
#endif
