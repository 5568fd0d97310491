package sluice.peers;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;

/**
 * sessions.yaml's aggregate: events: count(), duration: duration(), pages: count_distinct(page),
 * first_page: first(page), last_page: last(page), revenue: sum(amount). A Flink POJO.
 */
public class SessionAgg {
  public long events;
  public long firstTs = Long.MAX_VALUE;
  public long lastTs = Long.MIN_VALUE;
  public String firstPage;
  public String lastPage;
  public String pages = "";  // the distinct pages, each followed by '\n'
  public double revenue;
  public boolean hasRevenue;

  public SessionAgg() {}

  public SessionAgg add(Click c) {
    ++events;
    if (c.ts < firstTs) {
      firstTs = c.ts;
      firstPage = c.page;
    }
    if (c.ts >= lastTs) {
      lastTs = c.ts;
      lastPage = c.page;
    }
    if (!containsPage(c.page)) pages = pages + c.page + "\n";
    if (c.amount != null) {
      revenue += c.amount;
      hasRevenue = true;
    }
    return this;
  }

  private boolean containsPage(String p) {
    int i = 0;
    while (true) {
      int j = pages.indexOf('\n', i);
      if (j < 0) return false;
      if (pages.regionMatches(i, p, 0, p.length()) && j - i == p.length()) return true;
      i = j + 1;
    }
  }

  /** Merges `b` (a session this one bridged with) into this one. */
  public SessionAgg merge(SessionAgg b) {
    if (b.events == 0) return this;
    if (events == 0) return b;
    events += b.events;
    if (b.firstTs < firstTs) {
      firstTs = b.firstTs;
      firstPage = b.firstPage;
    }
    if (b.lastTs >= lastTs) {
      lastTs = b.lastTs;
      lastPage = b.lastPage;
    }
    int i = 0;
    while (i < b.pages.length()) {
      int j = b.pages.indexOf('\n', i);
      String p = b.pages.substring(i, j);
      if (!containsPage(p)) pages = pages + p + "\n";
      i = j + 1;
    }
    revenue += b.revenue;
    hasRevenue |= b.hasRevenue;
    return this;
  }

  public int distinctPages() {
    int n = 0;
    for (int i = 0; i < pages.length(); i++) if (pages.charAt(i) == '\n') n++;
    return n;
  }

  /** The window result as Sluice writes it (without "id"). */
  public String toJson(String key, long start, long end) {
    StringBuilder b = new StringBuilder(200);
    b.append("{\"job\":\"sessions\",\"key\":\"").append(key).append("\",\"window_start\":").append(start);
    b.append(",\"window_end\":").append(end).append(",\"kind\":\"final\",\"events\":").append(events);
    b.append(",\"duration\":").append(lastTs - firstTs).append(",\"pages\":").append(distinctPages());
    b.append(",\"first_page\":\"").append(firstPage).append("\",\"last_page\":\"").append(lastPage);
    b.append("\",\"revenue\":").append(hasRevenue ? Double.toString(revenue) : "null").append('}');
    return b.toString();
  }

  public byte[] toBytes() {
    try {
      ByteArrayOutputStream bo = new ByteArrayOutputStream(64);
      DataOutputStream o = new DataOutputStream(bo);
      o.writeLong(events);
      o.writeLong(firstTs);
      o.writeLong(lastTs);
      o.writeUTF(firstPage == null ? "" : firstPage);
      o.writeUTF(lastPage == null ? "" : lastPage);
      o.writeUTF(pages);
      o.writeDouble(revenue);
      o.writeBoolean(hasRevenue);
      return bo.toByteArray();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static SessionAgg fromBytes(byte[] bytes) {
    try {
      DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes));
      SessionAgg a = new SessionAgg();
      a.events = in.readLong();
      a.firstTs = in.readLong();
      a.lastTs = in.readLong();
      a.firstPage = in.readUTF();
      a.lastPage = in.readUTF();
      a.pages = in.readUTF();
      a.revenue = in.readDouble();
      a.hasRevenue = in.readBoolean();
      return a;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
