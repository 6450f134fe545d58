/* A handler that compiles but that the verifier refuses: a tracepoint program may not call
 * bpf_override_return (kprobes only). Sharing on_inet_sock_set_state with other collectors,
 * it must not take their handlers down (tests/e2e/test_registry.py). */
NS_HANDLER(sock, inet_sock_set_state)
{
    bpf_override_return((void *)args, 0);
    return 0;
}
