/* UDP datagram sends per remote port, process and uid, counted in the kernel.
 *
 * The destination is known only at the syscall: sendto()/sendmsg() with an address (read from
 * user memory at sys_enter), or the address an earlier connect() gave the descriptor, kept per
 * (tgid, fd) until close(). It is stashed by thread id for the duration of the syscall, and
 * sock:sock_send_length, which fires in the same thread once per datagram after the protocol
 * is known, confirms UDP and counts it. sendmmsg() sends several datagrams in one call: each
 * sock_send_length reads the next message's own address. Everything runs in the sender's
 * context, so a process that sends and exits at once is still counted under its own name.
 * write()/writev() on a connected UDP socket are not seen (they would need a tracepoint on
 * every write on the machine).
 */
/* common.h and watch.h are prepended by the loader: bcc rewrites map calls only in the main file. */

#define AF_INET_NUM 2
#define AF_INET6_NUM 10
#define IPPROTO_UDP_NUM 17
#define MMSGHDR_SIZE 64  /* struct mmsghdr: a 56-byte user_msghdr, msg_len, padding */
#define UDP_RESULT_SENT 0

/* Must match exporter/collectors/udp_sends.py. */
#define MAP_UDP_SENDS 0
#define MAP_CONNECTED 1
#define MAP_SENDING 2

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

struct fd_key_t {
    u32 tgid;
    u32 fd;
};

/* One send syscall in progress in a thread. */
struct sending_t {
    struct destination_t destination;  /* the explicit or connected one */
    u64 mmsg;  /* sendmmsg's message array: each datagram may name its own address */
    u32 next;  /* index of sendmmsg's next message */
};

BPF_HASH(udp_sends, struct udp_send_key_t, u64, UDP_SENDS_MAP_SIZE);
BPF_TABLE("lru_hash", struct fd_key_t, struct destination_t, connected, CONNECTED_MAP_SIZE);
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

static __always_inline void connected_destination(u32 fd, struct destination_t *out)
{
    struct fd_key_t key = {};
    key.tgid = bpf_get_current_pid_tgid() >> 32;
    key.fd = fd;
    struct destination_t *known = connected.lookup(&key);
    if (known)
        *out = *known;
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

#ifdef HAVE_TP_syscalls_sys_enter_connect
int on_sys_enter_connect(struct tp_syscalls_sys_enter_connect *args)
{
    /* Any socket type: TCP connects land here too and are simply never sent on as UDP. */
    struct fd_key_t key = {};
    key.tgid = bpf_get_current_pid_tgid() >> 32;
    key.fd = args->fd;
    struct destination_t destination = {};
    read_sockaddr(args->uservaddr, &destination);
    if (!destination.valid) {  /* AF_UNSPEC dissolves the association */
        connected.delete(&key);
        return 0;
    }
    if (connected.update(&key, &destination))
        note_update_failure(MAP_CONNECTED);
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_enter_close
int on_sys_enter_close(struct tp_syscalls_sys_enter_close *args)
{
    struct fd_key_t key = {};
    key.tgid = bpf_get_current_pid_tgid() >> 32;
    key.fd = args->fd;
    connected.delete(&key);
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_enter_sendto
int on_sys_enter_sendto(struct tp_syscalls_sys_enter_sendto *args)
{
    struct sending_t send = {};
    read_sockaddr(args->addr, &send.destination);
    if (!send.destination.valid)
        connected_destination(args->fd, &send.destination);
    begin_send(&send);
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_enter_sendmsg
int on_sys_enter_sendmsg(struct tp_syscalls_sys_enter_sendmsg *args)
{
    struct sending_t send = {};
    read_msghdr_name(args->msg, &send.destination);
    if (!send.destination.valid)
        connected_destination(args->fd, &send.destination);
    begin_send(&send);
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_enter_sendmmsg
int on_sys_enter_sendmmsg(struct tp_syscalls_sys_enter_sendmmsg *args)
{
    struct sending_t send = {};
    send.mmsg = args->mmsg;
    connected_destination(args->fd, &send.destination);
    begin_send(&send);
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_exit_sendto
int on_sys_exit_sendto(struct tp_syscalls_sys_exit_sendto *args)
{
    end_send();
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_exit_sendmsg
int on_sys_exit_sendmsg(struct tp_syscalls_sys_exit_sendmsg *args)
{
    end_send();
    return 0;
}
#endif

#ifdef HAVE_TP_syscalls_sys_exit_sendmmsg
int on_sys_exit_sendmmsg(struct tp_syscalls_sys_exit_sendmmsg *args)
{
    end_send();
    return 0;
}
#endif

static __always_inline void count_send(const struct destination_t *destination)
{
    struct udp_send_key_t key = {};
    key.uid = (u32)bpf_get_current_uid_gid();
    key.port = destination->port;
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
    if (!watch_match(&event, IPPROTO_UDP_NUM, WATCH_DIR_OUTBOUND, destination->port))
        return;
    event.result = UDP_RESULT_SENT;
    event.remote_port = destination->port;
    watch_current_process(&event);
    watch_emit(ctx, &event);
}

#ifdef HAVE_TP_sock_sock_send_length
int on_sock_send_length(struct tp_sock_sock_send_length *args)
{
    if (args->protocol != IPPROTO_UDP_NUM)
        return 0;
    if (args->family != AF_INET_NUM && args->family != AF_INET6_NUM)
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sending_t *send = sending.lookup(&tid);
    if (!send)
        return 0;  /* not from a send syscall we trace (write(), io_uring, the kernel) */
    struct destination_t destination = send->destination;
    if (send->mmsg) {
        struct destination_t own = {};
        read_msghdr_name(send->mmsg + (u64)send->next * MMSGHDR_SIZE, &own);
        send->next++;
        if (own.valid)
            destination = own;
    }
    if (args->ret < 0 || !destination.valid)
        return 0;
    count_send(&destination);
    watch_send(args, &destination);
    return 0;
}
#endif
