/* Packets the kernel dropped, per call site (location), drop reason and L3 protocol.
 *
 * skb:kfree_skb fires for every freed packet that was dropped rather than consumed, often in
 * softirq context, so no process is attributed. The location is symbolised in userspace and
 * the reason decoded from this kernel's own format file; here they stay raw numbers.
 * On kernels whose reason table still lists "not dropped" values (NOT_DROPPED_YET, CONSUMED)
 * the collector defines them, and they are skipped.
 */
/* common.h is prepended by the loader: bcc rewrites map calls only in the main file. */

/* MAP_* comes from exporter/collectors/packet_drops.py as a define. */

struct drop_key_t {
    u64 location;  /* the kernel address that called kfree_skb */
    u32 reason;    /* 0 on kernels without a reason field (before 5.17) */
    u16 protocol;  /* ethertype, host order */
    u16 reserved;  /* explicit, so the key has no padding bytes */
    u32 epoch;
    u32 reserved2;
};

BPF_HASH(drops, struct drop_key_t, u64, DROPS_MAP_SIZE);

#ifdef HAVE_TP_skb_kfree_skb
NS_HANDLER(skb, kfree_skb)
{
    struct drop_key_t key = {};
#ifdef KFREE_SKB_HAS_REASON
    key.reason = args->reason;
#ifdef REASON_NOT_DROPPED_YET
    if (key.reason == REASON_NOT_DROPPED_YET)
        return 0;
#endif
#ifdef REASON_CONSUMED
    if (key.reason == REASON_CONSUMED)
        return 0;
#endif
#endif
    key.location = (u64)args->location;
    key.protocol = args->protocol;
    key.epoch = current_epoch();
    u64 zero = 0;
    u64 *value = drops.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, 1);
    else
        note_update_failure(MAP_DROPS);
    return 0;
}
#endif
