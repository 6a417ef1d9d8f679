#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>
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
