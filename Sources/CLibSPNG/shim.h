// libspng from the system (Debian: libspng-dev), found with pkg-config.
#include <spng.h>
