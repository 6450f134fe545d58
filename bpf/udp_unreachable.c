/* ICMP port-unreachable replies to UDP datagrams, per closed local port.
 *
 * icmp:icmp_send (about 6.13+, IPv4 only) carries the offending datagram's ports; it fills
 * them only for UDP (dport 0 otherwise). It runs in the namespace that owns the closed port,
 * for every network namespace of the host.
 */
/* common.h is prepended by the loader: bcc rewrites map calls only in the main file.
 * Ports are folded there (fold_port) like inbound refused TCP ports. */

#define ICMP_DEST_UNREACH_NUM 3
#define ICMP_PORT_UNREACH_NUM 3

/* MAP_* comes from exporter/collectors/udp_unreachable.py as a define. */

struct unreachable_key_t {
    u16 port;
    u16 reserved;  /* explicit, so the key has no padding bytes */
    u32 epoch;
};

BPF_HASH(unreachable, struct unreachable_key_t, u64, UNREACHABLE_MAP_SIZE);

#ifdef HAVE_TP_icmp_icmp_send
NS_HANDLER(icmp, icmp_send)
{
    if (args->type != ICMP_DEST_UNREACH_NUM || args->code != ICMP_PORT_UNREACH_NUM)
        return 0;
    if (args->dport == 0)
        return 0;  /* not UDP, or a truncated header */
    struct unreachable_key_t key = {};
    key.port = fold_port(args->dport, 1);  /* a closed port: the UDP twin of inbound refused */
    key.epoch = current_epoch();
    u64 zero = 0;
    u64 *value = unreachable.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, 1);
    else
        note_update_failure(MAP_UNREACHABLE);
    return 0;
}
#endif
