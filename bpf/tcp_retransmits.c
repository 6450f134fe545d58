/* TCP retransmitted segments per direction, port, process, uid and kind, counted in the kernel.
 *
 * tcp:tcp_retransmit_skb fires in timer or softirq context, so the process comes from the
 * per-socket owner map of socket_owners.h. Only retransmits the kernel sent (err == 0) count,
 * each with its segment count (tcp_skb_pcount: SKB_CB_OFF + TCP_SKB_CB_SEGS_OFF, from BTF), so
 * the total equals the socket's tcpi_total_retrans (`ss -ti` retrans:x/TOTAL). A retransmit
 * from SYN_SENT is a handshake one (kind syn), as is every tcp:tcp_retransmit_synack, which is
 * credited to the listener's owner; the rest are data (kind data).
 */
/* common.h and socket_owners.h (with the owner-keeping handlers) are prepended by the loader.
 * Ports are folded (fold_port). */

/* KIND_* and MAP_* come from exporter/collectors/tcp_retransmits.py as defines. */

BPF_F_TABLE("hash", struct owned_key_t, u64, retransmits, RETRANSMITS_MAP_SIZE,
            BPF_F_NO_PREALLOC);

static __always_inline void count_retransmits(const struct socket_owner_t *who, u8 kind,
                                              u64 segments)
{
    struct owned_key_t key = {};
    owned_key(who, kind, &key);
    u64 zero = 0;
    u64 *value = retransmits.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, segments);
    else
        note_update_failure(MAP_RETRANSMITS);
}

#ifdef HAVE_TP_tcp_tcp_retransmit_skb
NS_HANDLER(tcp, tcp_retransmit_skb)
{
    if (args->err)
        return 0;  /* not sent (e.g. the qdisc refused it): the kernel does not count it */
    u64 segments = 1;
#if defined(SKB_CB_OFF) && defined(TCP_SKB_CB_SEGS_OFF)
    u16 pcount = 0;
    bpf_probe_read_kernel(&pcount, sizeof(pcount),
                          (void *)((u64)args->skbaddr + SKB_CB_OFF + TCP_SKB_CB_SEGS_OFF));
    if (pcount > 1)
        segments = pcount;
#endif
    struct socket_owner_t who = {};
    socket_owner((u64)args->skaddr, args->sport, args->dport, &who);
    count_retransmits(&who, args->state == OWNER_ST_SYN_SENT ? KIND_SYN : KIND_DATA, segments);
    return 0;
}
#endif

#ifdef HAVE_TP_tcp_tcp_retransmit_synack
NS_HANDLER(tcp, tcp_retransmit_synack)
{
    struct socket_owner_t who = {};
    listener_owner((u64)args->skaddr, args->sport, &who);
    count_retransmits(&who, KIND_SYN, 1);
    return 0;
}
#endif
