/* udpflood: sends UDP datagrams to one address as fast as it can for a while, in
 * batches with sendmmsg, and prints how many it sent. The load generator of
 * bench/collect-throughput.sh (lab namespaces only).
 *
 * Usage: udpflood DST_IPV4 PORT SECONDS [PAYLOAD_BYTES]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DST_IPV4 PORT SECONDS [PAYLOAD_BYTES]\n", argv[0]);
        return 2;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", argv[1]);
        return 2;
    }
    double seconds = atof(argv[3]);
    size_t size = argc > 4 ? (size_t)atoi(argv[4]) : 18;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
        perror("socket");
        return 1;
    }
    char payload[1500];
    memset(payload, 'x', sizeof payload);
    if (size > sizeof payload) size = sizeof payload;
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = payload;
        iov[i].iov_len = size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long sent = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0) sent += n;
    }
    double took = now() - start;
    printf("sent %llu packets in %.3f s: %.0f packets/s\n", sent, took, sent / took);
    return 0;
}
