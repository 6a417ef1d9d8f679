// 8-bit grayscale PNG files through libpng. libpng reports errors with
// longjmp, which Swift code must never cross, so its calls live here and
// every error comes back as a return value with a message.
#ifndef CFLEET_PNG_H
#define CFLEET_PNG_H
#include <stddef.h>
#include <stdint.h>

/// Writes `width` x `height` 8-bit gray pixels (rows top to bottom) to
/// `path` with zlib level `level` (0-9). Returns 0, or -1 with `err` set.
int cfleet_png_write_gray8(const char *path, const uint8_t *pixels, int width, int height, int level,
                           char *err, size_t errlen);

/// Reads an 8-bit grayscale PNG (or palette or 16-bit gray, converted).
/// Returns 0 and a malloc'd buffer in `*pixels` (free it with free()), or -1
/// with `err` set; a colour image is an error.
int cfleet_png_read_gray8(const char *path, uint8_t **pixels, int *width, int *height, char *err, size_t errlen);

#endif
