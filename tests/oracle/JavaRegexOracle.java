import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import java.util.regex.*;

public class JavaRegexOracle {
  static String esc(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"': b.append("\\\""); break;
        case '\\': b.append("\\\\"); break;
        case '\b': b.append("\\b"); break;
        case '\t': b.append("\\t"); break;
        case '\n': b.append("\\n"); break;
        case '\f': b.append("\\f"); break;
        case '\r': b.append("\\r"); break;
        default:
          if (c < 0x20) b.append(String.format("\\u%04X", (int) c)); else b.append(c);
      }
    }
    return b.append('"').toString();
  }
  public static void main(String[] a) throws Exception {
    // args: patternFile fieldsCsv dashNull inputFile
    String pat = new String(Files.readAllBytes(Paths.get(a[0])), StandardCharsets.UTF_8);
    String[] fields = a[1].split(",");
    boolean dash = a[2].equals("1");
    Pattern p = Pattern.compile(pat);
    byte[] data = Files.readAllBytes(Paths.get(a[3]));
    int start = 0;
    StringBuilder out = new StringBuilder();
    for (int i = 0; i <= data.length; i++) {
      if (i == data.length || data[i] == '\n') {
        int end = i < data.length ? i + 1 : i;
        if (end == start) break;
        String s = new String(data, start, end - start, StandardCharsets.UTF_8);
        start = end;
        if (s.endsWith("\n")) s = s.substring(0, s.length() - 1);
        Matcher m = p.matcher(s);
        if (!m.matches() || m.groupCount() != fields.length) continue;
        StringBuilder j = new StringBuilder("{");
        for (int k = 0; k < fields.length; k++) {
          String v = m.group(k + 1);
          if (dash && v != null && v.equals("-")) v = null;
          if (k > 0) j.append(',');
          j.append(esc(fields[k])).append(':').append(v == null ? "null" : esc(v));
        }
        j.append("}\n");
        out.append(esc(j.toString())).append('\n');
      }
    }
    System.out.write(out.toString().getBytes(StandardCharsets.UTF_8));
    System.out.flush();
  }
}
