/* A ring buffer of bytes, written for modeld's completion benchmark. */
#include <stdlib.h>
#include <string.h>

struct ring {
    unsigned char *data;
    size_t capacity;
    size_t head;
    size_t length;
};

struct ring *ring_new(size_t capacity) {
    struct ring *ring = malloc(sizeof(struct ring));
    if (ring == NULL) {
        return NULL;
    }
    ring->data = malloc(capacity);
    if (ring->data == NULL) {
        free(ring);
        return NULL;
    }
    ring->capacity = capacity;
    ring->head = 0;
    ring->length = 0;
    return ring;
}

void ring_free(struct ring *ring) {
    free(ring->data);
    free(ring);
}

size_t ring_write(struct ring *ring, const unsigned char *bytes, size_t count) {
    size_t written = 0;
    while (written < count && ring->length < ring->capacity) {
        size_t tail = (ring->head + ring->length) % ring->capacity;
        ring->data[tail] = bytes[written];
        ring->length += 1;
        written += 1;
    }
    return written;
}

size_t ring_read(struct ring *ring, unsigned char *out, size_t count) {
    size_t read = 0;
    while (read < count && ring->length > 0) {
        out[read] = ring->data[ring->head];
        ring->head = (ring->head + 1) % ring->capacity;
        ring->length -= 1;
        read += 1;
    }
    return read;
}
