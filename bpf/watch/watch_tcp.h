/* Watch events for TCP, called from bpf/tcp_connections.c at the points where it learns an
 * attempt's owner and outcome. Pasted by the loader after watch.h.
 *
 * Outbound: the caller's identity is taken at CLOSE->SYN_SENT (process context), kept by
 * socket address, and sent with the outcome; an outcome whose errno comes after the CLOSE waits
 * in watch_closing, keyed like the counter's own tuple. Inbound events carry the listener's
 * owner (accepted) or no process at all (refused): they happen in softirq context.
 */

struct watch_tuple_t {
    u32 peer_fold;
    u16 sport;
    u16 dport;
};

struct watch_closed_t {
    struct watch_event_t event;
    u64 closed_ns;  /* userspace sends it as an error once no errno came for a while */
};

BPF_TABLE("lru_hash", u64, struct watch_event_t, watch_connecting, WATCH_PENDING_MAP_SIZE);
BPF_TABLE("lru_hash", struct watch_tuple_t, struct watch_closed_t, watch_closing,
          WATCH_PENDING_MAP_SIZE);

#ifdef HAVE_TP_sock_inet_sock_set_state
static __always_inline void watch_tcp_connect(u64 skaddr, struct tp_sock_inet_sock_set_state *args)
{
    struct watch_event_t event = {};
    watch_address(event.remote_addr, args->family, args->daddr, args->daddr_v6);
    if (!watch_match(&event, WATCH_PROTO_TCP, WATCH_DIR_OUTBOUND, args->dport))
        return;
    event.remote_port = args->dport;
    watch_current_process(&event);
    watch_connecting.update(&skaddr, &event);
}

/* The attempt's outcome is known now; the local address and port are assigned by now. */
static __always_inline void watch_tcp_outcome(u64 skaddr, struct tp_sock_inet_sock_set_state *args,
                                              u8 result)
{
    struct watch_event_t *pending = watch_connecting.lookup(&skaddr);
    if (!pending)
        return;
    struct watch_event_t event = *pending;
    watch_connecting.delete(&skaddr);
    event.result = result;
    event.local_port = args->sport;
    watch_address(event.local_addr, args->family, args->saddr, args->saddr_v6);
    watch_emit(args, &event);
}

/* Closed before its errno was reported: wait for inet_sk_error_report (watch_tcp_reported). */
static __always_inline void watch_tcp_closing(u64 skaddr, struct tp_sock_inet_sock_set_state *args,
                                              u32 peer_fold)
{
    struct watch_event_t *pending = watch_connecting.lookup(&skaddr);
    if (!pending)
        return;
    struct watch_closed_t closed = {};
    closed.event = *pending;
    watch_connecting.delete(&skaddr);
    closed.event.local_port = args->sport;
    watch_address(closed.event.local_addr, args->family, args->saddr, args->saddr_v6);
    closed.closed_ns = bpf_ktime_get_ns();
    struct watch_tuple_t tuple = {};
    tuple.peer_fold = peer_fold;
    tuple.sport = args->sport;
    tuple.dport = args->dport;
    watch_closing.update(&tuple, &closed);
}

static __always_inline void watch_tcp_inbound(struct tp_sock_inet_sock_set_state *args, u8 result,
                                              const struct owner_t *owner)
{
    struct watch_event_t event = {};
    watch_address(event.remote_addr, args->family, args->daddr, args->daddr_v6);
    if (!watch_match(&event, WATCH_PROTO_TCP, WATCH_DIR_INBOUND, args->sport))
        return;
    event.result = result;
    event.local_port = args->sport;
    event.remote_port = args->dport;
    watch_address(event.local_addr, args->family, args->saddr, args->saddr_v6);
    event.uid = NO_UID;
    if (owner) {  /* the listener's owner: this runs in softirq context */
        event.uid = owner->uid;
        __builtin_memcpy(event.comm, owner->comm, sizeof(event.comm));
    }
    watch_emit(args, &event);
}
#endif

#ifdef HAVE_TP_sock_inet_sk_error_report
static __always_inline void watch_tcp_reported(void *ctx, u16 sport, u16 dport, u32 peer_fold,
                                               u8 result)
{
    struct watch_tuple_t tuple = {};
    tuple.peer_fold = peer_fold;
    tuple.sport = sport;
    tuple.dport = dport;
    struct watch_closed_t *closed = watch_closing.lookup(&tuple);
    if (!closed)
        return;
    struct watch_event_t event = closed->event;
    watch_closing.delete(&tuple);
    event.result = result;
    watch_emit(ctx, &event);
}
#endif

/* Bytes 0-1 of a struct sockaddr_in(6) are the family (host order), 2-3 the port (big-endian),
 * then the IPv4 address at 4 or the IPv6 address at 8. */
static __always_inline void watch_sockaddr(const u8 *sockaddr, u8 *addr, u16 *port)
{
    u16 family = sockaddr[0] | ((u16)sockaddr[1] << 8);
    *port = ((u16)sockaddr[2] << 8) | sockaddr[3];
    watch_address(addr, family, sockaddr + 4, sockaddr + 8);
}

#ifdef HAVE_TP_tcp_tcp_send_reset
/* An RST for a port nobody listens on: `ours` and `peer` are the tracepoint's sockaddrs. */
static __always_inline void watch_tcp_refused(void *ctx, const u8 *ours, const u8 *peer, u8 result)
{
    struct watch_event_t event = {};
    watch_sockaddr(peer, event.remote_addr, &event.remote_port);
    watch_sockaddr(ours, event.local_addr, &event.local_port);
    if (!watch_match(&event, WATCH_PROTO_TCP, WATCH_DIR_INBOUND, event.local_port))
        return;
    event.result = result;
    event.uid = NO_UID;
    watch_emit(ctx, &event);
}
#endif
