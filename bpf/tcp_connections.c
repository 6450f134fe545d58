/* TCP connections and attempts per direction, port, process and uid, counted in the kernel.
 *
 * Outbound: the connect() caller is remembered at CLOSE->SYN_SENT (process context) by socket
 * address, and the attempt is counted when the socket leaves SYN_SENT: ESTABLISHED, an RST
 * (refused), or CLOSE with the errno that inet_sk_error_report gives (ETIMEDOUT = timeout).
 * The error report comes before or after the CLOSE depending on the kernel and the path, so
 * whichever of the two arrives first waits for the other, keyed by ports and peer address.
 * Inbound: the owner of a listening socket is remembered at CLOSE->LISTEN, keyed by the socket's
 * network namespace and local port (every pod may listen on the same port), and forgotten when
 * the last listener there goes back to CLOSE. SYN_RECV->ESTABLISHED counts an accepted
 * connection with the namespace, so userspace can credit the process that holds the listener
 * when it reads the counts (after an exec or a socket handover that is not the listen() caller
 * remembered here). An RST sent without a socket (tcp_send_reset with no skaddr, reason
 * NO_SOCKET) is a refused one.
 * The namespace is read from the socket at offsets from the kernel's BTF (SKC_NET_OFF,
 * NET_NS_INUM_OFF); without them it is 0 and listeners are keyed by port alone.
 */
/* common.h, watch.h and watch_tcp.h are prepended by the loader: bcc rewrites map calls only
 * in the main file. The watch_tcp_* calls send the attempts a `watch:` rule matches. */

#define IPPROTO_TCP_NUM 6
#define AF_INET_NUM 2
#define AF_INET6_NUM 10
#define ETIMEDOUT_NUM 110
#define ECONNREFUSED_NUM 111

#define ST_ESTABLISHED 1
#define ST_SYN_SENT 2
#define ST_SYN_RECV 3
#define ST_CLOSE 7
#define ST_LISTEN 10

/* DIR_*, RESULT_* and MAP_* come from exporter/collectors/tcp_connections.py as defines. */

struct connection_key_t {
    u32 uid;
    u16 port;
    u8 direction;
    u8 result;
    char comm[NS_TASK_COMM_LEN];
    u32 epoch;  /* current_epoch() when counted: lets userspace drain without loss */
    u32 netns;  /* inbound: the listener's network namespace inode; 0 for outbound */
    u64 cgroup_id;  /* 0 unless the pod/container labels are on (NS_CGROUP_LABELS) */
};

struct listener_key_t {
    u32 netns;
    u16 port;
    u16 reserved;  /* explicit, so the key has no padding bytes */
};

struct listener_t {
    struct owner_t owner;  /* the last listen() caller, or whom userspace found holding it */
    u32 sockets;  /* listening sockets on this port in this namespace (IPv4, IPv6, reuseport) */
};

struct attempt_t {
    struct owner_t owner;
    u64 started_ns;  /* connect(): an entry far older than any SYN timeout was never closed */
    u64 closed_ns;  /* set when the socket closed before its errno was known */
    u16 port;
    u8 reset_seen;
};

/* An errno reported before the socket's CLOSE; older than ERROR_MAX_AGE_NS it is stale. */
struct socket_error_t {
    u64 reported_ns;
    s32 error;
};
#define ERROR_MAX_AGE_NS 1000000000ULL

/* Identifies one connection between its CLOSE and its error report, which share no socket
 * address; the pair (local port, peer port, peer address) is unique while a SYN is out. */
struct tuple_t {
    u32 peer_fold;
    u16 sport;
    u16 dport;
};

/* Plain hashes, not LRU: a full map refuses the update (counted in map_update_failures)
 * instead of evicting an attempt in flight without a word. Entries are allocated on use
 * (BPF_F_NO_PREALLOC), so a large capacity costs memory only under load. Userspace sweeps
 * what the kernel side never deletes (exporter/collectors/tcp_connections.py). */
BPF_F_TABLE("hash", struct connection_key_t, u64, connections, CONNECTIONS_MAP_SIZE,
            BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, struct attempt_t, connecting, PENDING_MAP_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct tuple_t, struct attempt_t, closing, PENDING_MAP_SIZE,
            BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct tuple_t, struct socket_error_t, socket_errors, PENDING_MAP_SIZE,
            BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct listener_key_t, struct listener_t, listeners, LISTENERS_MAP_SIZE,
            BPF_F_NO_PREALLOC);

static __always_inline void count_connection(u8 direction, u8 result, u16 port, u32 netns,
                                             const struct owner_t *owner)
{
    struct connection_key_t key = {};
    key.netns = netns;
    key.direction = direction;
    key.result = result;
    key.port = fold_port(port, direction == DIR_INBOUND && result == RESULT_REFUSED);
    key.epoch = current_epoch();
    if (owner) {
        key.uid = owner->uid;
        __builtin_memcpy(key.comm, owner->comm, sizeof(key.comm));
        key.cgroup_id = owner->cgroup_id;
    } else {
        key.uid = NO_UID;  /* no process: the labels stay empty */
    }
    u64 zero = 0;
    u64 *value = connections.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, 1);
    else
        note_update_failure(MAP_CONNECTIONS);
}

static __always_inline u8 result_from_errno(s32 error)
{
    if (error < 0)
        error = -error;
    if (error == ETIMEDOUT_NUM)
        return RESULT_TIMEOUT;
    if (error == ECONNREFUSED_NUM)
        return RESULT_REFUSED;
    return RESULT_ERROR;
}

static __always_inline u32 fold_peer(u16 family, const u8 *v4, const u8 *v6)
{
    u32 words[4] = {};
    if (family == AF_INET_NUM) {
        __builtin_memcpy(words, v4, 4);
        return words[0];
    }
    __builtin_memcpy(words, v6, 16);
    return words[0] ^ words[1] ^ words[2] ^ words[3];
}

#ifdef HAVE_TP_sock_inet_sock_set_state
NS_HANDLER(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP_NUM)
        return 0;
    u64 skaddr = (u64)args->skaddr;
    int oldstate = args->oldstate, newstate = args->newstate;

    if (oldstate == ST_CLOSE && newstate == ST_SYN_SENT) {
        struct attempt_t attempt = {};
        current_owner(&attempt.owner);
        attempt.started_ns = bpf_ktime_get_ns();
        attempt.port = args->dport;
        if (connecting.update(&skaddr, &attempt))
            note_update_failure(MAP_CONNECTING);
        watch_tcp_connect(skaddr, args);
        return 0;
    }
    if (oldstate == ST_CLOSE && newstate == ST_LISTEN) {
        struct listener_key_t key = {};
        key.netns = socket_netns(skaddr);
        key.port = args->sport;
        struct listener_t *known = listeners.lookup(&key);
        if (known) {  /* another socket on the port: IPv6 beside IPv4, or SO_REUSEPORT */
            current_owner(&known->owner);
            __sync_fetch_and_add(&known->sockets, 1);
            return 0;
        }
        struct listener_t listener = {};
        current_owner(&listener.owner);
        listener.sockets = 1;
        if (listeners.update(&key, &listener))
            note_update_failure(MAP_LISTENERS);
        return 0;
    }
    if (oldstate == ST_LISTEN && newstate == ST_CLOSE) {
        struct listener_key_t key = {};
        key.netns = socket_netns(skaddr);
        key.port = args->sport;
        struct listener_t *known = listeners.lookup(&key);
        if (known && known->sockets > 1)
            known->sockets--;
        else if (known)
            listeners.delete(&key);
        return 0;
    }
    if (newstate == ST_ESTABLISHED && (oldstate == ST_SYN_SENT || oldstate == ST_SYN_RECV)) {
        watch_tcp_outcome(skaddr, args, RESULT_ESTABLISHED);
        struct attempt_t *attempt = connecting.lookup(&skaddr);
        if (attempt) {  /* an active open, including a simultaneous open via SYN_RECV */
            count_connection(DIR_OUTBOUND, RESULT_ESTABLISHED, attempt->port, 0, &attempt->owner);
            connecting.delete(&skaddr);
            return 0;
        }
        if (oldstate == ST_SYN_RECV) {  /* the child socket shares its listener's namespace */
            struct listener_key_t key = {};
            key.netns = socket_netns(skaddr);
            key.port = args->sport;
            struct listener_t *listener = listeners.lookup(&key);
            struct owner_t *owner = listener ? &listener->owner : 0;
            count_connection(DIR_INBOUND, RESULT_ACCEPTED, key.port, key.netns, owner);
            watch_tcp_inbound(args, RESULT_ACCEPTED, owner);
        }
        return 0;
    }
    if (oldstate == ST_SYN_SENT && newstate == ST_CLOSE) {
        struct attempt_t *attempt = connecting.lookup(&skaddr);
        if (!attempt)
            return 0;
        if (attempt->reset_seen) {
            count_connection(DIR_OUTBOUND, RESULT_REFUSED, attempt->port, 0, &attempt->owner);
            watch_tcp_outcome(skaddr, args, RESULT_REFUSED);
            connecting.delete(&skaddr);
            return 0;
        }
        struct tuple_t tuple = {};
        tuple.sport = args->sport;
        tuple.dport = args->dport;
        tuple.peer_fold = fold_peer(args->family, args->daddr, args->daddr_v6);
        struct socket_error_t *reported = socket_errors.lookup(&tuple);
        u64 now = bpf_ktime_get_ns();
        if (reported && now - reported->reported_ns < ERROR_MAX_AGE_NS) {
            count_connection(DIR_OUTBOUND, result_from_errno(reported->error), attempt->port, 0,
                             &attempt->owner);
            watch_tcp_outcome(skaddr, args, result_from_errno(reported->error));
            socket_errors.delete(&tuple);
        } else {
            watch_tcp_closing(skaddr, args, tuple.peer_fold);
            struct attempt_t waiting = *attempt;
            waiting.closed_ns = now;
            if (closing.update(&tuple, &waiting))
                note_update_failure(MAP_CLOSING);
        }
        connecting.delete(&skaddr);
    }
    return 0;
}
#endif

#ifdef HAVE_TP_tcp_tcp_receive_reset
NS_HANDLER(tcp, tcp_receive_reset)
{
    u64 skaddr = (u64)args->skaddr;
    struct attempt_t *attempt = connecting.lookup(&skaddr);
    if (attempt)
        attempt->reset_seen = 1;
    return 0;
}
#endif

#ifdef HAVE_TP_sock_inet_sk_error_report
NS_HANDLER(sock, inet_sk_error_report)
{
    if (args->protocol != IPPROTO_TCP_NUM)
        return 0;
    struct tuple_t tuple = {};
    tuple.sport = args->sport;
    tuple.dport = args->dport;
    tuple.peer_fold = fold_peer(args->family, args->daddr, args->daddr_v6);
    watch_tcp_reported(args, tuple.sport, tuple.dport, tuple.peer_fold, result_from_errno(args->error));
    struct attempt_t *attempt = closing.lookup(&tuple);
    if (attempt) {
        count_connection(DIR_OUTBOUND, result_from_errno(args->error), attempt->port, 0,
                         &attempt->owner);
        closing.delete(&tuple);
        return 0;
    }
    struct socket_error_t reported = {};
    reported.reported_ns = bpf_ktime_get_ns();
    reported.error = args->error;
    if (socket_errors.update(&tuple, &reported))
        note_update_failure(MAP_SOCKET_ERRORS);
    return 0;
}
#endif

#ifdef HAVE_TP_tcp_tcp_send_reset
NS_HANDLER(tcp, tcp_send_reset)
{
    if (args->skaddr)
        return 0;  /* an RST from a socket, not for a port nobody listens on */
#ifdef RST_REASON_NO_SOCKET
    if (args->reason != RST_REASON_NO_SOCKET)
        return 0;
#endif
    /* saddr is our side as a struct sockaddr_in(6): the port is at bytes 2-3, big-endian. */
    u16 port = ((u16)args->saddr[2] << 8) | args->saddr[3];
    count_connection(DIR_INBOUND, RESULT_REFUSED, port, 0, 0);
    watch_tcp_refused(args, args->saddr, args->daddr, RESULT_REFUSED);
    return 0;
}
#endif
