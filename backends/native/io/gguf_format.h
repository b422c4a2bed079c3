/* gguf_format: the constants of the GGUF file format that both the reader (io/gguf.c) and
 * the writer (peft/gguf_write.c) use: magic, versions, default alignment and the metadata
 * value types. Tensor type ids are GGML's (io/dequant.h). */
#ifndef FTLAB_GGUF_FORMAT_H
#define FTLAB_GGUF_FORMAT_H

#define GGUF_MAGIC 0x46554747u      /* "GGUF" read as a little-endian uint32 */
#define GGUF_MAGIC_BYTES "GGUF"
#define GGUF_VERSION_WRITTEN 3u     /* the version ftlab writes; it reads 2 and 3 */
#define GGUF_DEFAULT_ALIGNMENT 32u  /* general.alignment when the file does not set it */

/* Metadata value types, numbered as in the file. */
enum gguf_vtype {
	GV_U8, GV_I8, GV_U16, GV_I16, GV_U32, GV_I32, GV_F32, GV_BOOL, GV_STRING, GV_ARRAY,
	GV_U64, GV_I64, GV_F64, GV_COUNT
};

#endif
