#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>
#include <spng.h>
#include "CFleetPNG.h"

typedef struct {
    char *err;
    size_t errlen;
} error_box;

static void on_error(png_structp png, png_const_charp message) {
    error_box *box = (error_box *)png_get_error_ptr(png);
    if (box && box->err) snprintf(box->err, box->errlen, "%s", message);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp message) { (void)png; (void)message; }

int cfleet_png_write_gray8(const char *path, const uint8_t *pixels, int width, int height, int level,
                           char *err, size_t errlen) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot create %s", path);
        return -1;
    }
    error_box box = {err, errlen};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &box, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        snprintf(err, errlen, "out of memory");
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_compression_level(png, level);
    png_set_filter(png, 0, PNG_FILTER_NONE);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * (size_t)width));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot finish writing %s", path);
        return -1;
    }
    return 0;
}

int cfleet_png_read_gray8(const char *path, uint8_t **pixels, int *width, int *height, char *err, size_t errlen) {
    *pixels = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    unsigned char sig[8];
    if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        snprintf(err, errlen, "%s is not a PNG file", path);
        fclose(f);
        return -1;
    }
    error_box box = {err, errlen};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &box, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        snprintf(err, errlen, "out of memory");
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return -1;
    }
    uint8_t *volatile buffer = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(buffer);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (type == PNG_COLOR_TYPE_RGB || type == PNG_COLOR_TYPE_RGB_ALPHA || type == PNG_COLOR_TYPE_PALETTE) {
        snprintf(err, errlen, "%s is a colour image, not a grayscale mask", path);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return -1;
    }
    png_read_update_info(png, info);
    if (w == 0 || h == 0 || w > 100000 || h > 100000) {
        snprintf(err, errlen, "%s has an unreasonable size %ux%u", path, (unsigned)w, (unsigned)h);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return -1;
    }
    buffer = malloc((size_t)w * (size_t)h);
    if (!buffer) {
        snprintf(err, errlen, "out of memory");
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return -1;
    }
    for (png_uint_32 y = 0; y < h; y++) png_read_row(png, buffer + (size_t)y * w, NULL);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    *pixels = buffer;
    *width = (int)w;
    *height = (int)h;
    return 0;
}

/* Row-by-row reading. 8-bit gray, non-interlaced files (the common mask
 * format) are decoded with libspng, which measured faster than libpng on
 * these files; anything else is read whole with libpng (converted as
 * cfleet_png_read_gray8 does) and handed out a row at a time. */
struct cfleet_png_rows {
    spng_ctx *spng;
    uint8_t *file;   /* the file's bytes, for libspng */
    uint8_t *pixels; /* the whole image, for libpng */
    size_t width, height, next;
};

static uint8_t *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        snprintf(err, errlen, failed ? "cannot read %s" : "out of memory", path);
        return NULL;
    }
    *len = n;
    return buf;
}

void cfleet_png_rows_close(cfleet_png_rows *r) {
    if (!r) return;
    if (r->spng) spng_ctx_free(r->spng);
    free(r->file);
    free(r->pixels);
    free(r);
}

cfleet_png_rows *cfleet_png_rows_open(const char *path, int *width, int *height, char *err, size_t errlen) {
    cfleet_png_rows *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t len = 0;
    r->file = read_file(path, &len, err, errlen);
    if (!r->file) {
        free(r);
        return NULL;
    }
    if (len < 8 || png_sig_cmp(r->file, 0, 8) != 0) {
        snprintf(err, errlen, "%s is not a PNG file", path);
        cfleet_png_rows_close(r);
        return NULL;
    }
    r->spng = spng_ctx_new(0);
    struct spng_ihdr ihdr;
    int rc = r->spng ? spng_set_png_buffer(r->spng, r->file, len) : SPNG_EMEM;
    if (rc == 0) rc = spng_get_ihdr(r->spng, &ihdr);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, spng_strerror(rc));
        cfleet_png_rows_close(r);
        return NULL;
    }
    if (ihdr.width == 0 || ihdr.height == 0 || ihdr.width > 100000 || ihdr.height > 100000) {
        snprintf(err, errlen, "%s has an unreasonable size %ux%u", path, (unsigned)ihdr.width, (unsigned)ihdr.height);
        cfleet_png_rows_close(r);
        return NULL;
    }
    r->width = ihdr.width;
    r->height = ihdr.height;
    if (ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && ihdr.bit_depth == 8 && ihdr.interlace_method == 0) {
        rc = spng_decode_image(r->spng, NULL, 0, SPNG_FMT_G8, SPNG_DECODE_PROGRESSIVE);
        if (rc != 0) {
            snprintf(err, errlen, "%s: %s", path, spng_strerror(rc));
            cfleet_png_rows_close(r);
            return NULL;
        }
    } else {
        spng_ctx_free(r->spng);
        r->spng = NULL;
        int w = 0, h = 0;
        if (cfleet_png_read_gray8(path, &r->pixels, &w, &h, err, errlen) != 0) {
            cfleet_png_rows_close(r);
            return NULL;
        }
    }
    *width = (int)r->width;
    *height = (int)r->height;
    return r;
}

int cfleet_png_rows_next(cfleet_png_rows *r, uint8_t *row, char *err, size_t errlen) {
    if (r->next >= r->height) {
        snprintf(err, errlen, "no rows left");
        return -1;
    }
    if (r->spng) {
        int rc = spng_decode_row(r->spng, row, r->width);
        /* SPNG_EOI comes with the last row: the image is complete. */
        if (rc != 0 && !(rc == SPNG_EOI && r->next + 1 == r->height)) {
            snprintf(err, errlen, "row %zu: %s", r->next, spng_strerror(rc));
            return -1;
        }
    } else {
        memcpy(row, r->pixels + r->next * r->width, r->width);
    }
    r->next++;
    return 0;
}
