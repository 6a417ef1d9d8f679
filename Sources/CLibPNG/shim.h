// libpng from the system (Debian: libpng-dev), found with pkg-config.
#include <png.h>
