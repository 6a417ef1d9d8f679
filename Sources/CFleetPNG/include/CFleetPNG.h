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

/// A PNG file read one row at a time, so that a row can be used while it
/// is in cache. 8-bit gray, non-interlaced files are decoded with libspng
/// (faster than libpng on them); other grayscale files are read whole with
/// libpng as by `cfleet_png_read_gray8`.
typedef struct cfleet_png_rows cfleet_png_rows;

/// Opens `path`: returns a reader and its size, or NULL with `err` set.
cfleet_png_rows *cfleet_png_rows_open(const char *path, int *width, int *height, char *err, size_t errlen);

/// Decodes the next row into `row` (`width` bytes). Returns 0, or -1 with
/// `err` set (a damaged file, or no rows left).
int cfleet_png_rows_next(cfleet_png_rows *rows, uint8_t *row, char *err, size_t errlen);

/// Frees the reader (NULL is allowed).
void cfleet_png_rows_close(cfleet_png_rows *rows);

#endif
