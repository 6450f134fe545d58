/* Kernel-shaped structs for the BTF reader's test (record_blob.py turns this into
 * kernel-shaped.btf). The layouts follow Linux 6.18's, cut down: anonymous unions and structs,
 * a typedef'd wrapper, a nested struct held by value, a bitfield, an array, qualifiers. */
typedef unsigned int u32_t;
typedef struct { struct net *net; } possible_net_t;

struct ns_common {
    unsigned int count;
    const void *ops;
    unsigned int inum;
};

struct net {
    int passive;
    char pad[148];
    struct ns_common ns;
    unsigned long long net_cookie;
};

struct sock_common {
    union {
        unsigned long long skc_addrpair;
        struct {
            unsigned int skc_daddr;
            unsigned int skc_rcv_saddr;
        };
    };
    union {
        unsigned int skc_hash;
        unsigned short skc_u16hashes[2];
    };
    union {
        unsigned int skc_portpair;
        struct {
            unsigned short skc_dport;
            unsigned short skc_num;
        };
    };
    unsigned short skc_family;
    volatile unsigned char skc_state;
    unsigned char skc_reuse : 4;
    unsigned char skc_reuseport : 1;
    int skc_bound_dev_if;
    void *skc_bind_node[2];
    void *skc_prot;
    possible_net_t skc_net;
    const u32_t skc_v6_daddr[4];
};

struct sock {
    struct sock_common __sk_common;
    unsigned short sk_type;
};

struct shapes_t {
    struct sock sock;
    struct net net;
};

BPF_ARRAY(shapes, struct shapes_t, 1);

int shapes_used(void *ctx)
{
    int zero = 0;
    struct shapes_t *shape = shapes.lookup(&zero);
    return shape ? shape->sock.sk_type : 0;
}
