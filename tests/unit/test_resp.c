/* Unit tests for resp's request parser (resp_parse): multibulk and inline
 * commands, input arriving in pieces, pipelines, every protocol error and
 * the bounds, those before AUTH included; and for the access rules without
 * sockets: the password comparison, the password file, protected mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "resp.h"

#define S(lit) lit, sizeof lit - 1

static resp_parser p;

static int setup(void **state) {
    (void)state;
    resp_parser_init(&p);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    resp_parser_free(&p);
    return 0;
}

static void assert_arg(size_t i, const char *want, size_t len) {
    assert_true(i < p.argc);
    assert_int_equal(p.argv[i].len, len);
    assert_memory_equal(p.argv[i].p, want, len);
}

/* Parses one whole command of buf[0..len) that must be exactly len bytes. */
static void parse_whole(const char *buf, size_t len) {
    size_t used = 0;
    assert_int_equal(resp_parse(&p, buf, len, &used), 1);
    assert_int_equal(used, len);
    for (size_t i = 0; i < p.argc; i++)
        assert_true(p.argv[i].p >= buf && p.argv[i].p + p.argv[i].len <= buf + len);
}

/* The protocol error that buf[0..len) gets, parsed from a fresh parser. */
static void assert_proto_error(const char *buf, size_t len, const char *why) {
    size_t used = 12345;
    resp_parser_free(&p);
    assert_int_equal(resp_parse(&p, buf, len, &used), RESP_EPROTO);
    assert_string_equal(p.err, why);
    assert_int_equal(used, 12345);
    resp_parser_free(&p);
}

static void assert_need_more(const char *buf, size_t len) {
    size_t used = 12345;
    resp_parser_free(&p);
    assert_int_equal(resp_parse(&p, buf, len, &used), 0);
    assert_int_equal(used, 12345);
    resp_parser_free(&p);
}

static void test_multibulk_command(void **state) {
    (void)state;
    parse_whole(S("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"));
    assert_int_equal(p.argc, 3);
    assert_arg(0, S("SET"));
    assert_arg(1, S("key"));
    assert_arg(2, S("value"));
}

/* A bulk string is binary: CR, LF, NUL and '*' inside are bytes like any. */
static void test_bulk_strings_are_binary(void **state) {
    (void)state;
    static const char cmd[] = "*2\r\n$4\r\nECHO\r\n$7\r\na\r\n\0*$\n\r\n";
    parse_whole(cmd, sizeof cmd - 1);
    assert_int_equal(p.argc, 2);
    assert_arg(1, "a\r\n\0*$\n", 7);
    parse_whole(S("*2\r\n$3\r\nGET\r\n$0\r\n\r\n"));
    assert_arg(1, "", 0);
}

/* Every proper prefix needs more; the parser resumes where it stopped
 * even when the bytes move between calls. */
static void test_partial_command_every_prefix(void **state) {
    (void)state;
    static const char cmd[] = "*3\r\n$3\r\nSET\r\n$10\r\nkey-number\r\n$12\r\nsome\r\nvalue!\r\n";
    const size_t len = sizeof cmd - 1;
    for (size_t k = 0; k < len; k++) {
        char *copy = malloc(len);   /* a new place each time */
        assert_non_null(copy);
        memcpy(copy, cmd, k);
        size_t used = 0;
        assert_int_equal(resp_parse(&p, copy, k, &used), 0);
        free(copy);
    }
    char *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, cmd, len);
    parse_whole(copy, len);
    assert_int_equal(p.argc, 3);
    assert_arg(0, S("SET"));
    assert_arg(1, S("key-number"));
    assert_arg(2, S("some\r\nvalue!"));
    free(copy);
}

static void test_pipelined_commands(void **state) {
    (void)state;
    static const char in[] = "*1\r\n$4\r\nPING\r\n"
                             "GET k\r\n"
                             "*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n"
                             "*2\r\n$3\r\nGET\r\n$1\r\n";   /* cut short */
    const char *s = in;
    size_t len = sizeof in - 1, used;
    assert_int_equal(resp_parse(&p, s, len, &used), 1);
    assert_int_equal(used, 14);
    assert_int_equal(p.argc, 1);
    assert_arg(0, S("PING"));
    s += used, len -= used;
    assert_int_equal(resp_parse(&p, s, len, &used), 1);
    assert_int_equal(used, 7);
    assert_int_equal(p.argc, 2);
    assert_arg(0, S("GET"));
    assert_arg(1, S("k"));
    s += used, len -= used;
    assert_int_equal(resp_parse(&p, s, len, &used), 1);
    assert_int_equal(used, 20);
    assert_int_equal(p.argc, 2);
    assert_arg(0, S("DEL"));
    s += used, len -= used;
    assert_int_equal(resp_parse(&p, s, len, &used), 0);
    /* the rest arrives */
    char more[64];
    memcpy(more, s, len);
    memcpy(more + len, "k\r\n", 3);
    parse_whole(more, len + 3);
    assert_int_equal(p.argc, 2);
    assert_arg(0, S("GET"));
    assert_arg(1, S("k"));
}

static void test_inline_commands(void **state) {
    (void)state;
    parse_whole(S("SET  key\tvalue \r\n"));
    assert_int_equal(p.argc, 3);
    assert_arg(0, S("SET"));
    assert_arg(1, S("key"));
    assert_arg(2, S("value"));
    parse_whole(S("PING\n"));       /* LF alone ends the line */
    assert_int_equal(p.argc, 1);
    assert_arg(0, S("PING"));
    parse_whole(S("GET a\rb\r\n")); /* a CR not before the LF is a blank, as in Redis */
    assert_int_equal(p.argc, 3);
    assert_arg(1, S("a"));
    assert_arg(2, S("b"));
    assert_need_more(S("PING"));
    assert_need_more(S("PING\r"));
    size_t used;
    assert_int_equal(resp_parse(&p, S("ECHO x\nPING\n"), &used), 1);
    assert_int_equal(used, 7);
    assert_arg(1, S("x"));
}

/* Inline arguments are split as Redis's sdssplitargs splits them (what
 * redis-server 7.0 answers to each of these lines, over telnet): quotes
 * were bytes of the arguments, so SET k "x" stored the three bytes "x"
 * and SET k "a b" was a SET of four arguments. */
static void test_inline_quotes_like_redis(void **state) {
    (void)state;
    size_t used;
    assert_int_equal(resp_parse(&p, S("SET k \"hello world\"\r\n"), &used), 1);
    assert_int_equal(p.argc, 3);
    assert_arg(1, S("k"));
    assert_arg(2, S("hello world"));
    assert_int_equal(resp_parse(&p, S("SET 'a \"b\" \\' c' x\n"), &used), 1);
    assert_int_equal(p.argc, 3);
    assert_arg(1, S("a \"b\" ' c"));
    assert_arg(2, S("x"));
    /* escapes in double quotes: C's, \xHH, any other char as itself */
    assert_int_equal(resp_parse(&p, S("ECHO \"a\\x41\\n\\r\\t\\b\\a\\\\\\\"\\xZ1\"\r\n"), &used), 1);
    assert_int_equal(p.argc, 2);
    assert_arg(1, S("aA\n\r\t\b\a\\\"xZ1"));
    /* empty quotes are an empty argument; a quote inside a word starts one */
    assert_int_equal(resp_parse(&p, S("ECHO \"\" a\"b c\"\t'd'\n"), &used), 1);
    assert_int_equal(p.argc, 4);
    assert_arg(1, S(""));
    assert_arg(2, S("ab c"));
    assert_arg(3, S("d"));
    /* words without quotes stay in the input */
    parse_whole(S("\v\fSET\rk\f v\r\n"));
    assert_int_equal(p.argc, 3);
    assert_arg(1, S("k\f"));
    assert_arg(2, S("v"));
    assert_proto_error(S("ECHO \"abc\r\n"), "unbalanced quotes in request");
    assert_proto_error(S("ECHO 'abc\n"), "unbalanced quotes in request");
    assert_proto_error(S("ECHO \"a\"b\r\n"), "unbalanced quotes in request");
    assert_proto_error(S("ECHO 'a'b\r\n"), "unbalanced quotes in request");
    assert_proto_error(S("ECHO \"a\\\"\r\n"), "unbalanced quotes in request");
    assert_need_more(S("ECHO \"a b"));
}

/* Empty commands are whole commands of no arguments, as in Redis. */
static void test_empty_commands(void **state) {
    (void)state;
    parse_whole(S("*0\r\n"));
    assert_int_equal(p.argc, 0);
    parse_whole(S("*-1\r\n"));
    assert_int_equal(p.argc, 0);
    parse_whole(S("*-1048577\r\n"));
    assert_int_equal(p.argc, 0);
    parse_whole(S("\r\n"));
    assert_int_equal(p.argc, 0);
    parse_whole(S("\n"));
    assert_int_equal(p.argc, 0);
    parse_whole(S(" \t \r\n"));
    assert_int_equal(p.argc, 0);
    /* and the next command is parsed afresh */
    parse_whole(S("*1\r\n$4\r\nPING\r\n"));
    assert_int_equal(p.argc, 1);
}

/* Like Redis, the LF after a length or a bulk string is not checked: any
 * byte after the CR will do. */
static void test_lf_is_not_checked(void **state) {
    (void)state;
    parse_whole(S("*1\rx$4\r-PINGab"));
    assert_int_equal(p.argc, 1);
    assert_arg(0, S("PING"));
}

static void test_protocol_errors(void **state) {
    (void)state;
    assert_proto_error(S("*abc\r\n"), "invalid multibulk length");
    assert_proto_error(S("*\r\n"), "invalid multibulk length");
    assert_proto_error(S("*-\r\n"), "invalid multibulk length");
    assert_proto_error(S("*1x\r\n"), "invalid multibulk length");
    assert_proto_error(S("* 1\r\n"), "invalid multibulk length");
    assert_proto_error(S("*+1\r\n"), "invalid multibulk length");
    assert_proto_error(S("*1234567890123456789\r\n"), "invalid multibulk length"); /* 19 digits */
    assert_proto_error(S("*1\r\n+PING\r\n"), "expected '$', got '+'");
    assert_proto_error(S("*2\r\n$3\r\nGET\r\n:1\r\n"), "expected '$', got ':'");
    assert_proto_error(S("*1\r\n$x\r\n"), "invalid bulk length");
    assert_proto_error(S("*1\r\n$\r\n"), "invalid bulk length");
    assert_proto_error(S("*1\r\n$-1\r\n"), "invalid bulk length");
    assert_proto_error(S("*1\r\n$-0x\r\n"), "invalid bulk length");
    /* an error comes as soon as its bytes are in, whatever follows */
    assert_proto_error(S("*1\r\n!"), "expected '$', got '!'");
}

static void test_multibulk_bounds(void **state) {
    (void)state;
    char line[32];
    snprintf(line, sizeof line, "*%d\r\n", RESP_MAX_ARGS + 1);
    assert_proto_error(line, strlen(line), "invalid multibulk length");
    snprintf(line, sizeof line, "*%d\r\n", RESP_MAX_ARGS);
    assert_need_more(line, strlen(line));
    snprintf(line, sizeof line, "*1\r\n$%u\r\n", RESP_MAX_BULK + 1);
    assert_proto_error(line, strlen(line), "invalid bulk length");
    snprintf(line, sizeof line, "*1\r\n$%u\r\n", RESP_MAX_BULK);
    assert_need_more(line, strlen(line));
    assert_need_more(S("*1\r\n$123456789012345678"));   /* 18 digits: waits for its CR */
}

/* A length line that has not ended within RESP_MAX_LINE bytes. */
static void test_length_lines_too_long(void **state) {
    (void)state;
    size_t n = RESP_MAX_LINE + 16;
    char *in = malloc(n);
    assert_non_null(in);
    in[0] = '*';
    memset(in + 1, '1', n - 1);
    assert_need_more(in, RESP_MAX_LINE);
    assert_proto_error(in, RESP_MAX_LINE + 1, "too big mbulk count string");
    memcpy(in, "*1\r\n$", 5);
    assert_need_more(in, RESP_MAX_LINE + 4);
    assert_proto_error(in, RESP_MAX_LINE + 5, "too big bulk count string");
    free(in);
}

/* An inline line gets RESP_MAX_LINE bytes to end; once its LF is in, it
 * is taken whatever its length. */
static void test_inline_too_long(void **state) {
    (void)state;
    size_t n = RESP_MAX_LINE + 16;
    char *in = malloc(n);
    assert_non_null(in);
    memset(in, 'a', n);
    assert_need_more(in, RESP_MAX_LINE);
    assert_proto_error(in, RESP_MAX_LINE + 1, "too big inline request");
    in[n - 1] = '\n';
    in[100] = ' ';
    parse_whole(in, n);
    assert_int_equal(p.argc, 2);
    assert_int_equal(p.argv[1].len, n - 102);
    free(in);
}

/* A multibulk of RESP_MAX_QUERY bytes is taken; one byte more is refused
 * as soon as the length that makes it too big is read. */
static void test_command_size_bound(void **state) {
    (void)state;
    char *in = malloc(RESP_MAX_QUERY + 64);
    assert_non_null(in);
    for (int extra = 0; extra <= 1; extra++) {
        size_t len = (size_t)sprintf(in, "*4\r\n");
        for (int i = 0; i < 3; i++) {
            len += (size_t)sprintf(in + len, "$%u\r\n", RESP_MAX_BULK);
            memset(in + len, 'v', RESP_MAX_BULK);
            len += RESP_MAX_BULK;
            len += (size_t)sprintf(in + len, "\r\n");
        }
        /* the last bulk fills the command to RESP_MAX_QUERY (+ extra) */
        size_t last = RESP_MAX_QUERY - len - strlen("$1048524\r\n") - 2 + (size_t)extra;
        len += (size_t)sprintf(in + len, "$%zu\r\n", last);
        if (extra) {
            assert_proto_error(in, len, "command too big (over 4194304 bytes)");
            break;
        }
        memset(in + len, 'w', last);
        len += last;
        len += (size_t)sprintf(in + len, "\r\n");
        assert_int_equal(len, RESP_MAX_QUERY);
        parse_whole(in, len);
        assert_int_equal(p.argc, 4);
        assert_int_equal(p.argv[3].len, last);
    }
    free(in);
}

/* Argument arrays grow with a command and are given back between
 * commands once past the bound asked for. */
static void test_many_arguments_and_shrink(void **state) {
    (void)state;
    const size_t n = 3000;
    char *in = malloc(16 + n * 7);
    assert_non_null(in);
    size_t len = (size_t)sprintf(in, "*%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(in + len, "$1\r\n%c\r\n", 'a' + (int)(i % 26));
    size_t used;
    assert_int_equal(resp_parse(&p, in, len - 1, &used), 0);
    resp_parser_shrink(&p, 8);      /* mid-command: kept */
    assert_true(p.cap >= n - 1);
    assert_int_equal(resp_parse(&p, in, len, &used), 1);
    assert_int_equal(used, len);
    assert_int_equal(p.argc, n);
    for (size_t i = 0; i < n; i++) assert_arg(i, &(char){(char)('a' + i % 26)}, 1);
    resp_parser_shrink(&p, 4096);   /* under the bound: kept */
    assert_non_null(p.argv);
    resp_parser_shrink(&p, 1024);
    assert_null(p.argv);
    assert_int_equal(p.cap, 0);
    parse_whole(S("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
    assert_arg(1, S("k"));
    free(in);
}

/* Before AUTH (noauth), Redis's bounds: 10 arguments, 16 KiB bulks, with
 * its messages; inline commands keep theirs. The caller may lift them
 * between commands. */
static void test_unauthenticated_bounds(void **state) {
    (void)state;
    size_t used;
    char *big = malloc(20000);
    assert_non_null(big);
    p.noauth = true;
    parse_whole(S("*10\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
                  "$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"));
    assert_int_equal(p.argc, 10);
    assert_int_equal(resp_parse(&p, S("*11\r\n"), &used), RESP_EPROTO);
    assert_string_equal(p.err, "unauthenticated multibulk length");
    resp_parser_free(&p);
    p.noauth = true;
    int len = sprintf(big, "*2\r\n$4\r\nAUTH\r\n$16384\r\n");
    memset(big + len, 'x', 16384);
    memcpy(big + len + 16384, "\r\n", 2);
    parse_whole(big, (size_t)len + 16386);
    assert_int_equal(p.argv[1].len, 16384);
    assert_int_equal(resp_parse(&p, S("*2\r\n$4\r\nAUTH\r\n$16385\r\n"), &used), RESP_EPROTO);
    assert_string_equal(p.err, "unauthenticated bulk length");
    resp_parser_free(&p);
    /* an inline command is bounded by its line only */
    p.noauth = true;
    memset(big, 'a', 20000);
    for (int i = 1; i < 40; i += 2) big[i] = ' ';
    big[19999] = '\n';
    parse_whole(big, 20000);
    assert_int_equal(p.argc, 21);
    /* lifted: the same commands pass */
    p.noauth = false;
    parse_whole(S("*11\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
                  "$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"));
    assert_int_equal(p.argc, 11);
    free(big);
}

static void test_password_comparison(void **state) {
    (void)state;
    char a[RESP_MAX_PASSWORD + 2], b[RESP_MAX_PASSWORD + 2];
    assert_true(resp_password_ok(S("secret"), S("secret")));
    assert_false(resp_password_ok(S("secret"), S("secreT")));
    assert_false(resp_password_ok(S("secret"), S("secre")));
    assert_false(resp_password_ok(S("secret"), S("secret\0")));
    assert_false(resp_password_ok(S("secret"), S("")));
    assert_false(resp_password_ok(S("a"), S("b")));
    memset(a, 'p', sizeof a);
    memset(b, 'p', sizeof b);
    assert_true(resp_password_ok(a, RESP_MAX_PASSWORD, b, RESP_MAX_PASSWORD));
    b[RESP_MAX_PASSWORD - 1] = 'q';     /* the last byte compared */
    assert_false(resp_password_ok(a, RESP_MAX_PASSWORD, b, RESP_MAX_PASSWORD));
    /* past the bound nothing matches, even the same bytes */
    assert_false(resp_password_ok(a, RESP_MAX_PASSWORD + 1, a, RESP_MAX_PASSWORD + 1));
    assert_false(resp_password_ok(a, RESP_MAX_PASSWORD, a, RESP_MAX_PASSWORD + 1));
}

static struct sockaddr_storage addr_of(const char *ip) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &v6->sin6_addr), 1);
        v6->sin6_family = AF_INET6;
    }
    return ss;
}

static bool loopback(const char *ip) {
    struct sockaddr_storage ss = addr_of(ip);
    return resp_addr_is_loopback((struct sockaddr *)&ss);
}

static bool allowed(const char *ip, bool has_password, bool protected_mode) {
    struct sockaddr_storage ss = addr_of(ip);
    return resp_peer_allowed((struct sockaddr *)&ss, has_password, protected_mode);
}

static void test_loopback_addresses(void **state) {
    (void)state;
    assert_true(loopback("127.0.0.1"));
    assert_true(loopback("127.0.0.2"));
    assert_true(loopback("127.255.255.254"));
    assert_true(loopback("::1"));
    assert_true(loopback("::ffff:127.0.0.1"));
    assert_false(loopback("128.0.0.1"));
    assert_false(loopback("126.255.255.255"));
    assert_false(loopback("10.0.0.1"));
    assert_false(loopback("192.168.1.20"));
    assert_false(loopback("0.0.0.0"));
    assert_false(loopback("::"));
    assert_false(loopback("::2"));
    assert_false(loopback("fe80::1"));
    assert_false(loopback("::ffff:10.0.0.1"));
    assert_false(loopback("::127.0.0.1"));     /* IPv4-compatible, not mapped */
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_false(resp_addr_is_loopback(&other));
}

/* Protected mode refuses only a peer off loopback, with no password set,
 * while it is on. */
static void test_protected_mode(void **state) {
    (void)state;
    assert_false(allowed("10.0.0.1", false, true));
    assert_false(allowed("2001:db8::1", false, true));
    assert_false(allowed("::ffff:192.0.2.7", false, true));
    assert_true(allowed("127.0.0.1", false, true));
    assert_true(allowed("::1", false, true));
    assert_true(allowed("10.0.0.1", true, true));     /* a password: AUTH decides */
    assert_true(allowed("10.0.0.1", false, false));   /* --protected-mode no */
    assert_true(allowed("10.0.0.1", true, false));
}

/* Writes text to a new file in mode, returns its path (static). */
static const char *password_file(const char *text, size_t len, mode_t mode) {
    static char path[64];
    strcpy(path, "/tmp/dht-test-pass-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void expect_password(const char *text, size_t len, const char *want) {
    const char *path = password_file(text, len, 0600);
    char *pw = resp_password_from_file(path);
    unlink(path);
    if (!want) {
        assert_null(pw);
        return;
    }
    assert_non_null(pw);
    assert_string_equal(pw, want);
    free(pw);
}

static void test_password_file(void **state) {
    (void)state;
    expect_password(S("s3cret\n"), "s3cret");
    expect_password(S("s3cret\r\n"), "s3cret");
    expect_password(S("s3cret"), "s3cret");
    expect_password(S("with spaces\tand tabs\nsecond line\n"), "with spaces\tand tabs");
    expect_password(S(""), NULL);
    expect_password(S("\nafter an empty line\n"), NULL);
    char big[RESP_MAX_PASSWORD + 2];
    memset(big, 'k', sizeof big);
    big[RESP_MAX_PASSWORD] = '\n';
    const char *path = password_file(big, RESP_MAX_PASSWORD + 1, 0600);   /* 512 bytes: taken */
    char *pw = resp_password_from_file(path);
    unlink(path);
    assert_non_null(pw);
    assert_int_equal(strlen(pw), RESP_MAX_PASSWORD);
    free(pw);
    big[RESP_MAX_PASSWORD] = 'k';
    big[RESP_MAX_PASSWORD + 1] = '\n';
    expect_password(big, RESP_MAX_PASSWORD + 2, NULL);                  /* 513: refused */
    expect_password(big, RESP_MAX_PASSWORD + 1, NULL);                  /* 513, no LF */
    assert_null(resp_password_from_file("/nonexistent/dht-password"));
    /* readable by others: taken, with a warning */
    path = password_file(S("open\n"), 0644);
    pw = resp_password_from_file(path);
    unlink(path);
    assert_non_null(pw);
    assert_string_equal(pw, "open");
    free(pw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_multibulk_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_strings_are_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_command_every_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_quotes_like_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lf_is_not_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multibulk_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_length_lines_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_size_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_arguments_and_shrink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unauthenticated_bounds, setup, teardown),
        cmocka_unit_test(test_password_comparison),
        cmocka_unit_test(test_loopback_addresses),
        cmocka_unit_test(test_protected_mode),
        cmocka_unit_test(test_password_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
