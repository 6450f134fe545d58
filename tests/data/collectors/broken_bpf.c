/* A handler that does not compile: the exporter must compile the other collectors without it
 * (tests/e2e/test_registry.py). */
NS_HANDLER(sock, inet_sock_set_state)
{
    return no_such_variable;
}
