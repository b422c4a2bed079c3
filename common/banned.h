/* banned: C library calls ftlab does not use, made compile errors. Every .c file includes
 * this header last (after every system header), so a banned call anywhere below expands to
 * an undeclared identifier that names the replacement; test_layers checks the inclusion.
 *   sprintf, vsprintf, strcpy, strcat: unbounded writes   -> snprintf, strbuf (util.h)
 *   strncpy, strncat: silent truncation, missing NUL      -> snprintf, strbuf
 *   gets: unbounded read                                  -> fgets, file_read_all
 *   atoi, atol, atoll, atof: no error reporting           -> parse_i64, parse_f64 (util.h)
 *   strtok: hidden global state                           -> strtok_r
 *   asctime, ctime, gmtime, localtime: static buffers     -> the _r variants */
#ifndef FTLAB_BANNED_H
#define FTLAB_BANNED_H

#define FTLAB_BANNED(name) banned_function_##name##_see_common_banned_h

#undef sprintf
#define sprintf(...) FTLAB_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) FTLAB_BANNED(vsprintf)
#undef strcpy
#define strcpy(...) FTLAB_BANNED(strcpy)
#undef strcat
#define strcat(...) FTLAB_BANNED(strcat)
#undef strncpy
#define strncpy(...) FTLAB_BANNED(strncpy)
#undef strncat
#define strncat(...) FTLAB_BANNED(strncat)
#undef gets
#define gets(...) FTLAB_BANNED(gets)
#undef atoi
#define atoi(...) FTLAB_BANNED(atoi)
#undef atol
#define atol(...) FTLAB_BANNED(atol)
#undef atoll
#define atoll(...) FTLAB_BANNED(atoll)
#undef atof
#define atof(...) FTLAB_BANNED(atof)
#undef strtok
#define strtok(...) FTLAB_BANNED(strtok)
#undef asctime
#define asctime(...) FTLAB_BANNED(asctime)
#undef ctime
#define ctime(...) FTLAB_BANNED(ctime)
#undef gmtime
#define gmtime(...) FTLAB_BANNED(gmtime)
#undef localtime
#define localtime(...) FTLAB_BANNED(localtime)

#endif
