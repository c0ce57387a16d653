/* Unit tests for shed (shed.h) as the Redis and HTTP ports use it: a
 * connection accepted when no memory is left for its state is closed, and
 * the port goes on serving the next ones. A node in the fake world
 * (fake_env.h) serves both ports on loopback, on a real libuv loop this test
 * turns itself; the test's clients are plain sockets in the same thread.
 * The memory runs out by hand: this test is linked with --wrap=calloc
 * (CMakeLists.txt), so while `calloc_fails` is set every calloc of the
 * node's code fails (libuv's own allocations are not ours and go on).
 *
 * Before conn_shed, the callback returned without uv_accept and libuv, which
 * holds the connection until then, stopped watching the listener: the
 * client that found no memory hung, and so did every later one, memory back
 * or not (the port was deaf for the node's life). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cmocka.h>
#include <uv.h>

#include "fake_env.h"
#include "http.h"
#include "resp.h"

static bool calloc_fails;
static unsigned callocs_failed;

void *__real_calloc(size_t nmemb, size_t size);
void *__wrap_calloc(size_t nmemb, size_t size);
void *__wrap_calloc(size_t nmemb, size_t size) {
    if (calloc_fails) {
        callocs_failed++;
        return NULL;
    }
    return __real_calloc(nmemb, size);
}

static uv_loop_t loop;
static node *n;
static uint16_t resp_port, http_port;

/* A free loopback TCP port (the kernel's choice, released again: libuv
 * binds with SO_REUSEADDR). */
static uint16_t free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int setup(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(uv_loop_init(&loop), 0);
    fake_reset(1000000, 1800000000000ull);
    node_config cfg = quiet_config();
    cfg.bind_ip = "127.0.0.1";
    cfg.resp_port = resp_port = free_port();
    cfg.http_port = http_port = free_port();
    n = fake_node(&cfg, 7000, 1 << 20);
    assert_non_null(n);
    assert_int_equal(resp_start(&loop, n), 0);
    assert_int_equal(http_start(&loop, n), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fake_node_free(n); /* the loop, its servers and their handles are left as they are */
    return 0;
}

/* A connected (non-blocking) client of a loopback port: the kernel takes
 * the connection into the listener's backlog before the node hears of it. */
static int dial(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    return fd;
}

/* Turns the loop for up to ms (bounded: at most 2 s of turns) until fd
 * holds `want` bytes, or its end (EOF, reset). The bytes read, or -1 at the
 * end with nothing read, or -2 when the time ran out. */
static long turn_until_read(int fd, char *buf, size_t want, int ms) {
    size_t got = 0;
    for (int t = 0; t < ms; t++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t r = recv(fd, buf + got, want - got, 0);
        if (r > 0) got += (size_t)r;
        if (got == want) return (long)got;
        if (r == 0 || (r < 0 && errno != EAGAIN)) return got ? (long)got : -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 1);
    }
    return -2;
}

/* Clients that arrive while no memory is left are closed; with memory
 * back, the port serves the next one. Three at once: libuv runs the
 * listener's callback for each in one turn, so the second and third find
 * the spare still closing the first and wait for it. */
static void shed_then_serve(uint16_t port, const char *request, const char *reply) {
    int lost[3];
    unsigned failed = callocs_failed;
    for (int k = 0; k < 3; k++) lost[k] = dial(port);
    calloc_fails = true;
    char buf[256];
    for (int k = 0; k < 3; k++)
        assert_int_equal(turn_until_read(lost[k], buf, sizeof buf, 2000), -1); /* closed */
    calloc_fails = false;
    assert_true(callocs_failed >= failed + 3);
    for (int k = 0; k < 3; k++) close(lost[k]);

    int fd = dial(port);
    size_t len = strlen(request);
    assert_int_equal(send(fd, request, len, 0), (ssize_t)len);
    size_t want = strlen(reply);
    long got = turn_until_read(fd, buf, want, 2000);
    assert_int_equal(got, (long)want); /* before: -2, nobody answered */
    assert_memory_equal(buf, reply, want);
    close(fd);
}

static void test_resp_port_sheds_and_serves_on(void **state) {
    (void)state;
    shed_then_serve(resp_port, "PING\r\n", "+PONG\r\n");
    shed_then_serve(resp_port, "*1\r\n$4\r\nPING\r\n", "+PONG\r\n");
}

static void test_http_port_sheds_and_serves_on(void **state) {
    (void)state;
    static const char get[] = "GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n";
    shed_then_serve(http_port, get, "HTTP/1.1 200");
    shed_then_serve(http_port, get, "HTTP/1.1 200");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resp_port_sheds_and_serves_on),
        cmocka_unit_test(test_http_port_sheds_and_serves_on),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
