/* Unit tests for http's request-head parser (http_parse_head): good heads,
 * heads arriving in pieces, the size bound, bad request lines, methods; the
 * Host field and which hosts are local (http_find_host, http_host_is_local). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

#define S(lit) lit, sizeof lit - 1

static http_request req;

static int parse(const char *buf, size_t len) {
    memset(&req, 0xA5, sizeof req);
    return http_parse_head(buf, len, &req);
}

static int parse_str(const char *s) { return parse(s, strlen(s)); }

static void assert_get(const char *buf, size_t len, const char *path, size_t head_len) {
    assert_int_equal(parse(buf, len), 200);
    assert_int_equal(req.head_len, head_len);
    assert_ptr_equal(req.method, buf);
    assert_int_equal(req.method_len, 3);
    assert_ptr_equal(req.path, buf + 4);
    assert_int_equal(req.path_len, strlen(path));
    assert_memory_equal(req.path, path, req.path_len);
}

static void test_good_get(void **state) {
    (void)state;
    static const char head[] = "GET /metrics HTTP/1.1\r\nHost: localhost:8080\r\n"
                               "User-Agent: curl/8.0\r\nAccept: */*\r\n\r\n";
    assert_get(S(head), "/metrics", sizeof head - 1);
    assert_get(S("GET / HTTP/1.0\r\n\r\n"), "/", 18);
    assert_get(S("GET /status HTTP/1.9\r\n\r\n"), "/status", 24);
}

/* The path stops at '?' or '#'; the target may hold any printable byte. */
static void test_path_without_query(void **state) {
    (void)state;
    assert_get(S("GET /status?x=1&y HTTP/1.1\r\n\r\n"), "/status", 30);
    assert_get(S("GET /metrics#top HTTP/1.1\r\n\r\n"), "/metrics", 29);
    assert_get(S("GET /?refresh=1 HTTP/1.1\r\n\r\n"), "/", 28);
    assert_get(S("GET /%2F/a~b HTTP/1.1\r\n\r\n"), "/%2F/a~b", 25);
    assert_get(S("GET //x HTTP/1.1\r\n\r\n"), "//x", 20);
}

/* Lines may end with LF alone, and the empty line too. */
static void test_line_ends(void **state) {
    (void)state;
    assert_get(S("GET /status HTTP/1.0\n\n"), "/status", 22);
    assert_get(S("GET /status HTTP/1.0\r\nHost: a\n\r\n"), "/status", 32);
    assert_get(S("GET /status HTTP/1.0\nHost: a\r\n\n"), "/status", 31);
}

/* What follows the head (a body, a second request) is not looked at. */
static void test_bytes_after_the_head(void **state) {
    (void)state;
    static const char in[] = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n\xff\x00";
    assert_get(S(in), "/a", 19);
}

/* Every proper prefix of a head needs more; the whole head is a GET. */
static void test_partial_head(void **state) {
    (void)state;
    static const char head[] = "GET /status HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
    for (size_t k = 0; k < sizeof head - 1; k++) {
        char *copy = malloc(k + 1);   /* exactly the bytes received */
        assert_non_null(copy);
        memcpy(copy, head, k);
        assert_int_equal(parse(copy, k), 0);
        free(copy);
    }
    assert_get(S(head), "/status", sizeof head - 1);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\n"), 0);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\n\r"), 0);
    assert_int_equal(parse_str("GET / HTTP/1.1\n\r"), 0);
    assert_int_equal(parse(NULL, 0), 0);
}

/* A head must end within HTTP_MAX_HEAD bytes. */
static void test_oversized_head(void **state) {
    (void)state;
    static const char start[] = "GET /status HTTP/1.1\r\nX-Pad: ", end[] = "\r\n\r\n";
    size_t big = HTTP_MAX_HEAD + 100;
    char *in = malloc(big);
    assert_non_null(in);
    /* a head of exactly the bound */
    memcpy(in, start, sizeof start - 1);
    memset(in + sizeof start - 1, 'a', big - (sizeof start - 1));
    memcpy(in + HTTP_MAX_HEAD - 4, end, 4);
    assert_get(in, HTTP_MAX_HEAD, "/status", HTTP_MAX_HEAD);
    assert_get(in, big, "/status", HTTP_MAX_HEAD);
    /* one byte more */
    memset(in + HTTP_MAX_HEAD - 4, 'a', 4);
    memcpy(in + HTTP_MAX_HEAD - 3, end, 4);
    assert_int_equal(parse(in, HTTP_MAX_HEAD - 1), 0);
    assert_int_equal(parse(in, HTTP_MAX_HEAD), 431);
    assert_int_equal(parse(in, HTTP_MAX_HEAD + 1), 431);
    assert_int_equal(parse(in, big), 431);
    /* a head that never ends */
    for (size_t i = 0; i + 6 <= big; i += 6) memcpy(in + i, "X: y\r\n", 6);
    assert_int_equal(parse(in, HTTP_MAX_HEAD - 1), 0);
    assert_int_equal(parse(in, HTTP_MAX_HEAD), 431);
    free(in);
}

/* Request lines that are not "METHOD /target HTTP/1.d" are 400. */
static void test_bad_request_lines(void **state) {
    (void)state;
    static const char *const lines[] = {
        "GARBAGE", "GET", "GET ", "GET /metrics", "GET metrics HTTP/1.1",
        "GET /metrics HTTP/2.0", "GET /metrics HTTP/1.1 extra", "GET  /metrics HTTP/1.1",
        "GET /m\x7f" "etrics HTTP/1.1", "G(T /metrics HTTP/1.1", "GET /metrics HTTP/1.x",
        "GET /metrics http/1.1", "", "\xff\xfe", " GET / HTTP/1.1", "GET / HTTP/1.1 ",
        "GET / HTTP/1.10", "GET / HTTP/1.", "GET / HTTP/1", "GET /\t HTTP/1.1",
        "GET /\xc3\xa9 HTTP/1.1", "GET\t/ HTTP/1.1", "GET / HTTP/1.1\r\r", "/ HTTP/1.1",
        "GET  HTTP/1.1",
    };
    char head[128];
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        size_t len = strlen(lines[i]);
        memcpy(head, lines[i], len);
        memcpy(head + len, "\r\n\r\n", 4);
        assert_int_equal(parse(head, len + 4), 400);
        assert_int_equal(req.head_len, len + 4);
    }
    /* a NUL in the line */
    assert_int_equal(parse(S("GET /me\0trics HTTP/1.1\r\n\r\n")), 400);
    assert_int_equal(parse(S("GET / HTTP/1.1\0\r\n\r\n")), 400);
    assert_int_equal(parse(S("\0GET / HTTP/1.1\r\n\r\n")), 400);
    /* an empty head: the request line is missing */
    assert_int_equal(parse(S("\r\n\r\n")), 400);
    assert_int_equal(parse(S("\n\n")), 400);
    assert_int_equal(req.head_len, 2);
}

/* A well-formed line with a method other than GET is 405: methods are
 * case-sensitive tokens. */
static void test_methods(void **state) {
    (void)state;
    static const char *const methods[] = {
        "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "get", "GETX", "GE", "X-CUSTOM!",
    };
    char head[64];
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        size_t mlen = strlen(methods[i]);
        memcpy(head, methods[i], mlen);
        memcpy(head + mlen, " /metrics HTTP/1.1\r\n\r\n", 22);
        assert_int_equal(parse(head, mlen + 22), 405);
        assert_ptr_equal(req.method, head);
        assert_int_equal(req.method_len, mlen);
        assert_int_equal(req.head_len, mlen + 22);
    }
    /* not tokens */
    assert_int_equal(parse_str("G/T /metrics HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(parse_str("GE\"T /metrics HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(parse_str("POST metrics HTTP/1.1\r\n\r\n"), 400);
}

/* The first Host field's value, blanks around it dropped; field names are
 * case-insensitive; the request line is not a field. */
static void test_find_host(void **state) {
    (void)state;
    const char *h;
    size_t len;
    static const char a[] = "GET / HTTP/1.1\r\nAccept: */*\r\nhOST: \t evil.example:80 \r\n"
                            "Host: 127.0.0.1\r\n\r\n";
    assert_true(http_find_host(S(a), &h, &len));
    assert_int_equal(len, 15);
    assert_memory_equal(h, "evil.example:80", len);
    static const char b[] = "GET / HTTP/1.0\nHost:x\n\n";
    assert_true(http_find_host(S(b), &h, &len));
    assert_int_equal(len, 1);
    assert_memory_equal(h, "x", 1);
    assert_false(http_find_host(S("GET /Host: HTTP/1.1\r\nX-Host: a\r\n\r\n"), &h, &len));
    assert_false(http_find_host(S("GET / HTTP/1.1\r\n\r\n"), &h, &len));
    static const char e[] = "GET / HTTP/1.1\r\nHost:\r\n\r\n";
    assert_true(http_find_host(S(e), &h, &len));
    assert_int_equal(len, 0);
}

/* Names DNS could point at 127.0.0.1 (DNS rebinding) are not local. */
static void test_host_is_local(void **state) {
    (void)state;
    static const char *const local[] = {
        "", "localhost", "LOCALHOST:8080", "localhost:", "127.0.0.1", "127.0.0.1:8080",
        "10.1.2.3:1", "[::1]", "[::1]:8080", "[fe80::1]:80", "[::ffff:127.0.0.1]",
    };
    static const char *const other[] = {
        "evil.example", "evil.example:8080", "localhost.evil.example", "localhostx",
        "x.localhost", "127.0.0.1.nip.io", "127.0.0.1:80x", "127.0.0.1:80:80", "[::1",
        "[]", "[::1]x", "[::1]:a", "[::g]", ":8080", "a", "0x7f.1",
    };
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        assert_true(http_host_is_local(local[i], strlen(local[i])));
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        assert_false(http_host_is_local(other[i], strlen(other[i])));
    assert_false(http_host_is_local(S("[::\0001]")));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_get),
        cmocka_unit_test(test_path_without_query),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_bytes_after_the_head),
        cmocka_unit_test(test_partial_head),
        cmocka_unit_test(test_oversized_head),
        cmocka_unit_test(test_bad_request_lines),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_find_host),
        cmocka_unit_test(test_host_is_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
