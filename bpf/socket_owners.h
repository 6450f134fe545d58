/* Who owns each TCP socket, for events that fire in softirq or timer context (retransmits,
 * resets received), where `current` is whatever task was on the CPU.
 *
 * The owner is remembered in process context: at connect() (CLOSE->SYN_SENT, the caller) and,
 * for an accepted socket, from its listener's owner, remembered at listen() (CLOSE->LISTEN)
 * by network namespace and local port. It is forgotten at tcp:tcp_destroy_sock. With it go the
 * direction and the port as netsnoop_tcp_connections_total has them: the remote port of an
 * outbound connection, the local service port of an inbound one.
 *
 * Pasted once into the module, after common.h (bcc rewrites map calls only in the main text):
 * the collectors that use it (OWNER_PROGRAMS in exporter/collectors/socket_owners.py) share one
 * copy of the maps and of the two handlers that keep them (on_inet_sock_set_state,
 * on_tcp_destroy_sock), which run before theirs. Compiled apart (after a failed compile of all
 * collectors together), each collector holds its own copy.
 */
#define OWNER_IPPROTO_TCP 6
#define OWNER_ST_ESTABLISHED 1
#define OWNER_ST_SYN_SENT 2
#define OWNER_ST_SYN_RECV 3
#define OWNER_ST_CLOSE 7
#define OWNER_ST_LISTEN 10

/* DIR_* (tcp_connections.py DIRECTIONS), NO_UID (an owner not known: the labels stay empty)
 * and MAP_SOCKET_OWNERS, MAP_LISTENER_OWNERS come from exporter/collectors/socket_owners.py
 * as defines. */

struct socket_owner_t {
    struct owner_t owner;
    u16 port;
    u8 direction;
    u8 established;  /* 0 while an outbound connect is in SYN_SENT: an RST then is a refusal */
};

struct owner_listener_key_t {
    u32 netns;
    u16 port;
    u16 reserved;  /* explicit, so the key has no padding bytes */
};

struct owner_listener_t {
    struct owner_t owner;
    u32 sockets;  /* listening sockets on this port in this namespace (IPv4, IPv6, reuseport) */
};

/* The counter key of an event labelled with its socket's owner: the owner, the connection's
 * direction and (folded) port, and one field of the counting program's own (`extra`: the kind
 * of a retransmit, the side of a reset). */
struct owned_key_t {
    u32 uid;
    u16 port;
    u8 direction;
    u8 extra;
    char comm[NS_TASK_COMM_LEN];
    u32 epoch;
    u32 reserved;  /* explicit, so the key has no padding bytes */
    u64 cgroup_id;  /* 0 unless the pod/container labels are on (NS_CGROUP_LABELS) */
};

/* Plain hashes: a full map refuses the update (counted) rather than evict a live socket. */
BPF_F_TABLE("hash", u64, struct socket_owner_t, socket_owners, SOCKET_OWNERS_MAP_SIZE,
            BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct owner_listener_key_t, struct owner_listener_t, listener_owners,
            LISTENER_OWNERS_MAP_SIZE, BPF_F_NO_PREALLOC);

static __always_inline void track_socket_state(struct tp_sock_inet_sock_set_state *args)
{
    if (args->protocol != OWNER_IPPROTO_TCP)
        return;
    u64 skaddr = (u64)args->skaddr;
    int oldstate = args->oldstate, newstate = args->newstate;
    if (oldstate == OWNER_ST_CLOSE && newstate == OWNER_ST_SYN_SENT) {
        struct socket_owner_t owner = {};
        current_owner(&owner.owner);
        owner.port = args->dport;
        owner.direction = DIR_OUTBOUND;
        if (socket_owners.update(&skaddr, &owner))
            note_update_failure(MAP_SOCKET_OWNERS);
        return;
    }
    if (oldstate == OWNER_ST_SYN_SENT && newstate == OWNER_ST_ESTABLISHED) {
        struct socket_owner_t *known = socket_owners.lookup(&skaddr);
        if (known)
            known->established = 1;
        return;
    }
    if (oldstate == OWNER_ST_SYN_RECV && newstate == OWNER_ST_ESTABLISHED) {
        struct socket_owner_t *known = socket_owners.lookup(&skaddr);
        if (known) {  /* a simultaneous open: the connect() caller is known */
            known->established = 1;
            return;
        }
        struct owner_listener_key_t key = {};
        key.netns = socket_netns(skaddr);
        key.port = args->sport;
        struct socket_owner_t owner = {};
        struct owner_listener_t *listener = listener_owners.lookup(&key);
        if (listener)
            owner.owner = listener->owner;
        else
            owner.owner.uid = NO_UID;  /* a listener older than the exporter */
        owner.port = args->sport;
        owner.direction = DIR_INBOUND;
        owner.established = 1;
        if (socket_owners.update(&skaddr, &owner))
            note_update_failure(MAP_SOCKET_OWNERS);
        return;
    }
    if (oldstate == OWNER_ST_CLOSE && newstate == OWNER_ST_LISTEN) {
        struct owner_listener_key_t key = {};
        key.netns = socket_netns(skaddr);
        key.port = args->sport;
        struct owner_listener_t *known = listener_owners.lookup(&key);
        if (known) {  /* another socket on the port: IPv6 beside IPv4, or SO_REUSEPORT */
            current_owner(&known->owner);
            __sync_fetch_and_add(&known->sockets, 1);
            return;
        }
        struct owner_listener_t listener = {};
        current_owner(&listener.owner);
        listener.sockets = 1;
        if (listener_owners.update(&key, &listener))
            note_update_failure(MAP_LISTENER_OWNERS);
        return;
    }
    if (oldstate == OWNER_ST_LISTEN && newstate == OWNER_ST_CLOSE) {
        struct owner_listener_key_t key = {};
        key.netns = socket_netns(skaddr);
        key.port = args->sport;
        struct owner_listener_t *known = listener_owners.lookup(&key);
        if (known && known->sockets > 1)
            known->sockets--;
        else if (known)
            listener_owners.delete(&key);
    }
}

/* The owner of an established socket; for one the exporter never saw open (it predates the
 * exporter), a local port with a listener means inbound, anything else outbound, and the
 * process stays unknown. */
static __always_inline void socket_owner(u64 skaddr, u16 sport, u16 dport,
                                         struct socket_owner_t *found)
{
    struct socket_owner_t *known = socket_owners.lookup(&skaddr);
    if (known) {
        *found = *known;
        return;
    }
    found->owner.uid = NO_UID;
    found->established = 1;  /* older than the exporter: long past its handshake */
    struct owner_listener_key_t key = {};
    key.netns = socket_netns(skaddr);
    key.port = sport;
    if (listener_owners.lookup(&key)) {
        found->direction = DIR_INBOUND;
        found->port = sport;
    } else {
        found->direction = DIR_OUTBOUND;
        found->port = dport;
    }
}

/* The owner of a listening socket (a SYN-ACK retransmit has only the listener). */
static __always_inline void listener_owner(u64 skaddr, u16 sport, struct socket_owner_t *found)
{
    struct owner_listener_key_t key = {};
    key.netns = socket_netns(skaddr);
    key.port = sport;
    struct owner_listener_t *listener = listener_owners.lookup(&key);
    if (listener)
        found->owner = listener->owner;
    else
        found->owner.uid = NO_UID;
    found->direction = DIR_INBOUND;
    found->port = sport;
}

static __always_inline void owned_key(const struct socket_owner_t *who, u8 extra,
                                      struct owned_key_t *key)
{
    key->uid = who->owner.uid;
    __builtin_memcpy(key->comm, who->owner.comm, sizeof(key->comm));
    key->cgroup_id = who->owner.cgroup_id;
    key->port = fold_port(who->port, 0);
    key->direction = who->direction;
    key->extra = extra;
    key->epoch = current_epoch();
}

#ifdef HAVE_TP_sock_inet_sock_set_state
NS_HANDLER(sock, inet_sock_set_state)
{
    track_socket_state(args);
    return 0;
}
#endif

#ifdef HAVE_TP_tcp_tcp_destroy_sock
NS_HANDLER(tcp, tcp_destroy_sock)
{
    u64 skaddr = (u64)args->skaddr;
    socket_owners.delete(&skaddr);
    return 0;
}
#endif
