/* Traffic for the benchmarks: the workloads whose throughput the exporter must not dent, and a
 * generator of distinct series for the scrape-cost measurement. Built by bench/run.sh with gcc.
 *
 *   load churn SECONDS [PAIRS]
 *                           loopback TCP: connect, send 1 byte, read 1 byte, close; repeat,
 *                           in PAIRS client processes against as many server processes (2)
 *   load udp SECONDS        sendto() 64-byte datagrams to a loopback receiver as fast as possible
 *   load bulk SECONDS       one loopback TCP connection, 64 KiB writes, the peer reads and discards
 *   load refuse FIRST LAST COMMS
 *                           connect to every port FIRST..LAST of 127.0.0.1 once under each of
 *                           COMMS thread names (bench-gen-NN); run it in a fresh network namespace,
 *                           where no port listens, so every attempt is refused
 *
 * Each mode prints one line of JSON: {"ops": N, "bytes": B, "seconds": S}.
 * The server side runs in a forked child on the other core; the server closes first, so the
 * TIME_WAIT sockets sit on its side and the client never runs out of ephemeral ports.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BULK_CHUNK (64 * 1024)
#define UDP_PAYLOAD 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static struct sockaddr_in loopback(unsigned short port)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

/* A socket bound to a free loopback port; its port is written to *port. */
static int bound_socket(int type, unsigned short *port)
{
    int fd = socket(AF_INET, type, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = loopback(0);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        die("bind");
    socklen_t len = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    *port = ntohs(addr.sin_port);
    return fd;
}

static pid_t fork_server(void (*serve)(int), int fd)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        serve(fd);
        _exit(0);
    }
    return pid;
}

static void stop_server(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void report(long long ops, long long bytes, double seconds)
{
    printf("{\"ops\": %lld, \"bytes\": %lld, \"seconds\": %.6f}\n", ops, bytes, seconds);
}

static void serve_churn(int listener)
{
    char byte;
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            continue;
        if (read(fd, &byte, 1) == 1)
            (void)!write(fd, &byte, 1);
        close(fd);
    }
}

/* One client's connect-exchange-close loop until the deadline; returns completed exchanges. */
static long long churn_client(unsigned short port, double deadline)
{
    struct sockaddr_in addr = loopback(port);
    long long ops = 0;
    char byte = 'x';
    while (now() < deadline) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 && write(fd, &byte, 1) == 1 &&
            read(fd, &byte, 1) == 1)
            ops++;
        close(fd);
    }
    return ops;
}

/* CHURN_PAIRS clients and as many servers, so both cores stay busy despite the round trips. */
static void churn(double seconds, int pairs)
{
    unsigned short port;
    int listener = bound_socket(SOCK_STREAM, &port);
    if (listen(listener, 4096) < 0)
        die("listen");
    pid_t servers[pairs], clients[pairs];
    for (int i = 0; i < pairs; i++)
        servers[i] = fork_server(serve_churn, listener);
    close(listener);
    long long *counts = mmap(NULL, sizeof(long long) * pairs, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (counts == MAP_FAILED)
        die("mmap");
    double began = now(), deadline = began + seconds;
    for (int i = 0; i < pairs; i++) {
        clients[i] = fork();
        if (clients[i] < 0)
            die("fork");
        if (clients[i] == 0) {
            counts[i] = churn_client(port, deadline);
            _exit(0);
        }
    }
    long long ops = 0;
    for (int i = 0; i < pairs; i++) {
        waitpid(clients[i], NULL, 0);
        ops += counts[i];
    }
    double ended = now();
    for (int i = 0; i < pairs; i++)
        stop_server(servers[i]);
    report(ops, ops, ended - began);
}

static void serve_udp(int fd)
{
    char buffer[UDP_PAYLOAD];
    for (;;)
        (void)!recv(fd, buffer, sizeof(buffer), 0);
}

static void udp(double seconds)
{
    unsigned short port;
    int receiver = bound_socket(SOCK_DGRAM, &port);
    pid_t server = fork_server(serve_udp, receiver);
    close(receiver);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = loopback(port);
    char payload[UDP_PAYLOAD] = {0};
    long long ops = 0;
    double began = now(), deadline = began + seconds, ended;
    while ((ended = now()) < deadline) {
        for (int i = 0; i < 64; i++)
            if (sendto(fd, payload, sizeof(payload), 0, (struct sockaddr *)&addr, sizeof(addr)) > 0)
                ops++;
    }
    stop_server(server);
    report(ops, ops * UDP_PAYLOAD, ended - began);
}

static void serve_bulk(int listener)
{
    static char buffer[BULK_CHUNK];
    int fd = accept(listener, NULL, NULL);
    while (read(fd, buffer, sizeof(buffer)) > 0)
        ;
}

static void bulk(double seconds)
{
    static char buffer[BULK_CHUNK];
    unsigned short port;
    int listener = bound_socket(SOCK_STREAM, &port);
    if (listen(listener, 1) < 0)
        die("listen");
    pid_t server = fork_server(serve_bulk, listener);
    close(listener);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = loopback(port);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        die("connect");
    long long bytes = 0, ops = 0;
    double began = now(), deadline = began + seconds, ended;
    while ((ended = now()) < deadline) {
        ssize_t sent = write(fd, buffer, sizeof(buffer));
        if (sent <= 0)
            die("write");
        bytes += sent;
        ops++;
    }
    close(fd);
    stop_server(server);
    report(ops, bytes, ended - began);
}

static void refuse(int first, int last, int comms)
{
    long long ops = 0;
    double began = now();
    for (int c = 0; c < comms; c++) {
        char name[32];
        snprintf(name, sizeof(name), "bench-gen-%02d", c);
        prctl(PR_SET_NAME, name);  /* the kernel keeps the first 15 bytes */
        for (int port = first; port <= last; port++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            if (fd < 0)
                die("socket");
            struct sockaddr_in addr = loopback((unsigned short)port);
            if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno == ECONNREFUSED)
                ops++;
            close(fd);
        }
    }
    report(ops, 0, now() - began);
}

int main(int argc, char **argv)
{
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "churn") == 0)
        churn(atof(argv[2]), argc == 4 ? atoi(argv[3]) : 2);
    else if (argc == 3 && strcmp(argv[1], "udp") == 0)
        udp(atof(argv[2]));
    else if (argc == 3 && strcmp(argv[1], "bulk") == 0)
        bulk(atof(argv[2]));
    else if (argc == 5 && strcmp(argv[1], "refuse") == 0)
        refuse(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    else {
        fprintf(stderr, "usage: %s churn SECONDS [PAIRS] | udp|bulk SECONDS | refuse FIRST LAST COMMS\n", argv[0]);
        return 2;
    }
    return 0;
}
