/* TCP resets on existing connections, sent and received, per port, process and uid.
 *
 * Received: tcp:tcp_receive_reset, except on an outbound connect still in SYN_SENT (a refused
 * attempt, counted by tcp_connections as result="refused"). Sent: tcp:tcp_send_reset from a
 * socket, except from a listener or a connect in SYN_SENT (handshake replies); an RST without
 * a socket (nothing listens on the port) is an inbound refused connection, counted there too.
 * Both fire in softirq context, or in the closing process for an abortive close (SO_LINGER 0),
 * so the process is the socket's owner from socket_owners.h in every case.
 */
/* common.h and socket_owners.h (with the owner-keeping handlers) are prepended by the loader.
 * Ports are folded (fold_port). */

/* SIDE_* and MAP_* come from exporter/collectors/tcp_resets.py as defines. */

BPF_F_TABLE("hash", struct owned_key_t, u64, resets, RESETS_MAP_SIZE, BPF_F_NO_PREALLOC);

static __always_inline void count_reset(const struct socket_owner_t *who, u8 side)
{
    struct owned_key_t key = {};
    owned_key(who, side, &key);
    u64 zero = 0;
    u64 *value = resets.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, 1);
    else
        note_update_failure(MAP_RESETS);
}

#ifdef HAVE_TP_tcp_tcp_send_reset
NS_HANDLER(tcp, tcp_send_reset)
{
    if (!args->skaddr)
        return 0;  /* no socket: a refused connection, not a reset of one */
    if (args->state == OWNER_ST_LISTEN || args->state == OWNER_ST_SYN_SENT)
        return 0;  /* a reply during a handshake */
    /* saddr is our side as a struct sockaddr_in(6): the port is at bytes 2-3, big-endian. */
    u16 sport = ((u16)args->saddr[2] << 8) | args->saddr[3];
    u16 dport = ((u16)args->daddr[2] << 8) | args->daddr[3];
    struct socket_owner_t who = {};
    socket_owner((u64)args->skaddr, sport, dport, &who);
    count_reset(&who, SIDE_SENT);
    return 0;
}
#endif

#ifdef HAVE_TP_tcp_tcp_receive_reset
NS_HANDLER(tcp, tcp_receive_reset)
{
    struct socket_owner_t who = {};
    socket_owner((u64)args->skaddr, args->sport, args->dport, &who);
    if (!who.established)
        return 0;  /* an answer to our SYN: a refused connect */
    count_reset(&who, SIDE_RECEIVED);
    return 0;
}
#endif
