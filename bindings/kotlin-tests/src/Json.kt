// A small JSON reader and writer for the tests: the JVM has none built in,
// and the test classpath stays free of anything but JUnit, JNA and Kotlin.
package io.countersign.tests

object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        val value = reader.value()
        reader.skipSpace()
        require(reader.atEnd()) { "trailing characters at ${reader.pos}" }
        return value
    }

    fun write(value: Any?): String = StringBuilder().also { write(value, it) }.toString()

    private fun write(value: Any?, out: StringBuilder) {
        when (value) {
            null -> out.append("null")
            is String -> writeString(value, out)
            is Boolean, is Int, is Long, is Short -> out.append(value.toString())
            is Map<*, *> -> {
                out.append('{')
                value.entries.forEachIndexed { i, (k, v) ->
                    if (i > 0) out.append(',')
                    writeString(k as String, out)
                    out.append(':')
                    write(v, out)
                }
                out.append('}')
            }
            is List<*> -> {
                out.append('[')
                value.forEachIndexed { i, v ->
                    if (i > 0) out.append(',')
                    write(v, out)
                }
                out.append(']')
            }
            else -> error("cannot write ${value::class}")
        }
    }

    private fun writeString(s: String, out: StringBuilder) {
        out.append('"')
        for (c in s) {
            when {
                c == '"' -> out.append("\\\"")
                c == '\\' -> out.append("\\\\")
                c < ' ' -> out.append("\\u%04x".format(c.code))
                else -> out.append(c)
            }
        }
        out.append('"')
    }

    private class Reader(val text: String) {
        var pos = 0

        fun atEnd() = pos >= text.length

        fun skipSpace() {
            while (!atEnd() && text[pos].isWhitespace()) pos++
        }

        fun value(): Any? {
            skipSpace()
            require(!atEnd()) { "unexpected end" }
            return when (val c = text[pos]) {
                '{' -> obj()
                '[' -> array()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c.isDigit()) number() else error("unexpected '$c' at $pos")
            }
        }

        private fun literal(word: String, value: Any?): Any? {
            require(text.startsWith(word, pos)) { "expected $word at $pos" }
            pos += word.length
            return value
        }

        private fun number(): Any {
            val start = pos
            while (!atEnd() && (text[pos].isDigit() || text[pos] in "+-.eE")) pos++
            val token = text.substring(start, pos)
            return token.toLongOrNull() ?: token.toDouble()
        }

        private fun string(): String {
            pos++
            val out = StringBuilder()
            while (true) {
                require(!atEnd()) { "unterminated string" }
                when (val c = text[pos++]) {
                    '"' -> return out.toString()
                    '\\' -> {
                        when (val e = text[pos++]) {
                            'n' -> out.append('\n')
                            't' -> out.append('\t')
                            'r' -> out.append('\r')
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000c')
                            'u' -> {
                                out.append(text.substring(pos, pos + 4).toInt(16).toChar())
                                pos += 4
                            }
                            else -> out.append(e)
                        }
                    }
                    else -> out.append(c)
                }
            }
        }

        private fun array(): List<Any?> {
            pos++
            val items = mutableListOf<Any?>()
            skipSpace()
            if (text[pos] == ']') return items.also { pos++ }
            while (true) {
                items.add(value())
                skipSpace()
                when (text[pos++]) {
                    ',' -> continue
                    ']' -> return items
                    else -> error("expected , or ] at ${pos - 1}")
                }
            }
        }

        private fun obj(): Map<String, Any?> {
            pos++
            val members = LinkedHashMap<String, Any?>()
            skipSpace()
            if (text[pos] == '}') return members.also { pos++ }
            while (true) {
                skipSpace()
                val key = string()
                skipSpace()
                require(text[pos++] == ':') { "expected : at ${pos - 1}" }
                members[key] = value()
                skipSpace()
                when (text[pos++]) {
                    ',' -> continue
                    '}' -> return members
                    else -> error("expected , or } at ${pos - 1}")
                }
            }
        }
    }
}

/** Navigation helpers for parsed JSON. */
@Suppress("UNCHECKED_CAST")
fun Any?.obj(key: String): Map<String, Any?> = (this as Map<String, Any?>)[key] as Map<String, Any?>

@Suppress("UNCHECKED_CAST")
fun Any?.str(key: String): String? = (this as Map<String, Any?>)[key] as String?

@Suppress("UNCHECKED_CAST")
fun Any?.long(key: String): Long? = (this as Map<String, Any?>)[key] as Long?

@Suppress("UNCHECKED_CAST")
fun Any?.list(key: String): List<Any?> = (this as Map<String, Any?>)[key] as List<Any?>

fun ByteArray.hex(): String = joinToString("") { "%02x".format(it) }

fun String.unhex(): ByteArray = chunked(2).map { it.toInt(16).toByte() }.toByteArray()
