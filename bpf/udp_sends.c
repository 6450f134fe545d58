/* UDP datagram sends per remote port, process and uid, counted in the kernel.
 *
 * sock:sock_send_length fires in the sender's thread once per datagram, whatever the syscall
 * (send, sendto, sendmsg, sendmmsg, write, writev), process or descriptor (dup'd, inherited,
 * passed with SCM_RIGHTS), and hands over the socket. The destination is:
 *   - the address the syscall names, for sendto()/sendmsg()/sendmmsg() with one: read from
 *     user memory at sys_enter and stashed by thread id until sys_exit (sendmmsg: each
 *     datagram reads the next message's own address);
 *   - else, on a connected socket (state ESTABLISHED), the peer the socket holds, read from
 *     struct sock_common at offsets from the kernel's BTF (SKC_*_OFF). Without BTF, sends
 *     on connected sockets are not counted.
 * Everything runs in the sender's context, so a process that sends and exits at once is still
 * counted under its own name.
 */
/* common.h and watch.h are prepended by the loader: bcc rewrites map calls only in the main file. */

#define AF_INET_NUM 2
#define AF_INET6_NUM 10
#define IPPROTO_UDP_NUM 17
#define MMSGHDR_SIZE 64  /* struct mmsghdr: a 56-byte user_msghdr, msg_len, padding */
#define ST_ESTABLISHED 1  /* what a connect()ed UDP socket's skc_state is */

/* UDP_RESULT_* and MAP_* come from exporter/collectors/udp_sends.py as defines. */

struct udp_send_key_t {
    u32 uid;
    u16 port;
    u16 reserved;  /* explicit, so the key has no padding bytes */
    char comm[NS_TASK_COMM_LEN];
    u32 epoch;
};

struct destination_t {
    u8 addr[16];  /* IPv4 as ::ffff:a.b.c.d */
    u16 port;
    u8 valid;
};

/* One send syscall with an address in progress in a thread. */
struct sending_t {
    struct destination_t destination;  /* the address the syscall names */
    u64 mmsg;  /* sendmmsg's message array: each datagram may name its own address */
    u32 next;  /* index of sendmmsg's next message */
};

BPF_HASH(udp_sends, struct udp_send_key_t, u64, UDP_SENDS_MAP_SIZE);
BPF_TABLE("lru_hash", u32, struct sending_t, sending, SENDING_MAP_SIZE);

/* A user-space sockaddr_in or sockaddr_in6 into a destination; invalid for other families. */
static __always_inline void read_sockaddr(u64 user_addr, struct destination_t *out)
{
    u8 head[8] = {};  /* family, port, IPv4 address: all that a sockaddr_in needs */
    out->valid = 0;
    if (!user_addr || bpf_probe_read_user(head, sizeof(head), (void *)user_addr))
        return;
    u16 family = head[0] | ((u16)head[1] << 8);
    if (family == AF_INET_NUM) {
        watch_address(out->addr, AF_INET_NUM, head + 4, 0);
    } else if (family == AF_INET6_NUM) {
        if (bpf_probe_read_user(out->addr, 16, (void *)(user_addr + 8)))
            return;
    } else {
        return;
    }
    out->port = ((u16)head[2] << 8) | head[3];
    out->valid = 1;
}

/* The address sendmsg()'s msghdr names (msg_name is its first member), if any. */
static __always_inline void read_msghdr_name(u64 msghdr, struct destination_t *out)
{
    u64 name = 0;
    out->valid = 0;
    if (msghdr && !bpf_probe_read_user(&name, sizeof(name), (void *)msghdr))
        read_sockaddr(name, out);
}

/* The peer of a connected socket, from the socket itself; invalid when not connected. */
static __always_inline void socket_destination(u64 sk, u16 family, struct destination_t *out)
{
    out->valid = 0;
#if defined(SKC_STATE_OFF) && defined(SKC_DPORT_OFF) && defined(SKC_DADDR_OFF) && \
    defined(SKC_V6_DADDR_OFF)
    u8 state = 0;
    u16 dport = 0;
    if (bpf_probe_read_kernel(&state, sizeof(state), (void *)(sk + SKC_STATE_OFF)) ||
        state != ST_ESTABLISHED)
        return;
    if (bpf_probe_read_kernel(&dport, sizeof(dport), (void *)(sk + SKC_DPORT_OFF)))
        return;
    if (family == AF_INET_NUM) {
        u8 v4[4] = {};
        if (bpf_probe_read_kernel(v4, sizeof(v4), (void *)(sk + SKC_DADDR_OFF)))
            return;
        watch_address(out->addr, AF_INET_NUM, v4, 0);
    } else if (bpf_probe_read_kernel(out->addr, 16, (void *)(sk + SKC_V6_DADDR_OFF))) {
        return;
    }
    out->port = (dport >> 8) | ((dport & 0xff) << 8);  /* skc_dport is big-endian */
    out->valid = 1;
#endif
}

static __always_inline void begin_send(struct sending_t *send)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (sending.update(&tid, send))
        note_update_failure(MAP_SENDING);
}

static __always_inline void end_send(void)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    sending.delete(&tid);
}

#ifdef HAVE_TP_syscalls_sys_enter_sendto
NS_HANDLER(syscalls, sys_enter_sendto)
{
    struct sending_t send = {};
    read_sockaddr(args->addr, &send.destination);
    if (send.destination.valid)  /* else the socket knows its peer, if it has one */
        begin_send(&send);
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_enter_sendmsg
NS_HANDLER(syscalls, sys_enter_sendmsg)
{
    struct sending_t send = {};
    read_msghdr_name(args->msg, &send.destination);
    if (send.destination.valid)
        begin_send(&send);
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_enter_sendmmsg
NS_HANDLER(syscalls, sys_enter_sendmmsg)
{
    struct sending_t send = {};  /* each message may name its own address */
    send.mmsg = args->mmsg;
    begin_send(&send);
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_exit_sendto
NS_HANDLER(syscalls, sys_exit_sendto)
{
    end_send();
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_exit_sendmsg
NS_HANDLER(syscalls, sys_exit_sendmsg)
{
    end_send();
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_exit_sendmmsg
NS_HANDLER(syscalls, sys_exit_sendmmsg)
{
    end_send();
    return 0;
}
#endif

static __always_inline void count_send(const struct destination_t *destination)
{
    struct udp_send_key_t key = {};
    key.uid = (u32)bpf_get_current_uid_gid();
    key.port = fold_port(destination->port, 0);  /* the port policy: a sweep of ports stays bounded */
    key.epoch = current_epoch();
    bpf_get_current_comm(key.comm, sizeof(key.comm));
    u64 zero = 0;
    u64 *value = udp_sends.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, 1);
    else
        note_update_failure(MAP_UDP_SENDS);
}

static __always_inline void watch_send(void *ctx, const struct destination_t *destination)
{
    struct watch_event_t event = {};
    __builtin_memcpy(event.remote_addr, destination->addr, 16);
    if (!watch_match(&event, WATCH_PROTO_UDP, WATCH_DIR_OUTBOUND, destination->port))
        return;
    event.result = UDP_RESULT_SENT;
    event.remote_port = destination->port;
    watch_current_process(&event);
    watch_emit(ctx, &event);
}

#ifdef HAVE_TP_sock_sock_send_length
NS_HANDLER(sock, sock_send_length)
{
    if (args->protocol != IPPROTO_UDP_NUM)
        return 0;
    if (args->family != AF_INET_NUM && args->family != AF_INET6_NUM)
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sending_t *send = sending.lookup(&tid);
    struct destination_t destination = {};
    if (send) {
        destination = send->destination;
        if (send->mmsg) {
            read_msghdr_name(send->mmsg + (u64)send->next * MMSGHDR_SIZE, &destination);
            send->next++;
        }
    }
    if (!destination.valid)  /* no address given: write(), send(), a connected sendmmsg() */
        socket_destination((u64)args->sk, args->family, &destination);
    if (args->ret < 0 || !destination.valid)
        return 0;
    count_send(&destination);
    watch_send(args, &destination);
    return 0;
}
#endif
