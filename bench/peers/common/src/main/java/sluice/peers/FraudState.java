package sluice.peers;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;

/**
 * One user's state for the four rules of examples/jobs/fraud.yaml, with the semantics of
 * JOBS.md: large_amount on arrival; the rolling rules (velocity 5m, new_country 30d, burst_spend
 * 1h) for a payment at t once the watermark reaches t, over the user's payments in (t - size, t];
 * dedup of transaction_id within 1h of event time. Held as bytes in each peer's RocksDB state.
 */
public final class FraudState {
  static final long VELOCITY_MS = 5 * 60_000L;
  static final long NEW_COUNTRY_MS = 30L * 86_400_000L;
  static final long BURST_MS = 3_600_000L;
  static final long DEDUP_MS = 3_600_000L;

  // The payments the rolling rules see (not late, not repeats), in arrival order.
  int n;
  long[] ts = new long[4];
  double[] amount = new double[4];
  String[] country = new String[4];
  // Dedup: transaction ids and their times.
  int dn;
  String[] dtxn = new String[4];
  long[] dts = new long[4];
  // Payments whose rolling rules wait for the watermark.
  int pn;
  long[] pts = new long[2];
  String[] pcountry = new String[2];
  String[] praw = new String[2];

  public boolean isEmpty() {
    return n == 0 && dn == 0 && pn == 0;
  }

  /** The earliest time a pending payment waits for, or Long.MAX_VALUE. */
  public long minPending() {
    long m = Long.MAX_VALUE;
    for (int i = 0; i < pn; i++) m = Math.min(m, pts[i]);
    return m;
  }

  /**
   * A payment that passed the filter, at watermark `wm` (before it). Appends its on-arrival
   * alerts to `out`; returns true when it waits for the watermark (a timer at p.ts is due).
   */
  public boolean onPayment(Payment p, long wm, List<String> out) {
    // Dedup (filter first, as in Sluice): a transaction id seen within 1h either side.
    for (int i = 0; i < dn; i++) {
      if (dtxn[i].equals(p.transaction_id) && Math.abs(dts[i] - p.ts) <= DEDUP_MS) return false;
    }
    // Forget what no payment that is not late can repeat.
    int k = 0;
    for (int i = 0; i < dn; i++) {
      if (dts[i] + DEDUP_MS > wm) {
        dtxn[k] = dtxn[i];
        dts[k++] = dts[i];
      }
    }
    dn = k;
    if (dn == dtxn.length) {
      dtxn = java.util.Arrays.copyOf(dtxn, dn * 2);
      dts = java.util.Arrays.copyOf(dts, dn * 2);
    }
    dtxn[dn] = p.transaction_id;
    dts[dn++] = p.ts;

    if (p.amount > 5000) out.add(alert("large_amount", p.user_id, p.ts, null, p.raw));
    if (p.ts <= wm) return false;  // late: no rolling rule sees it (Sluice: the late topic)

    // Forget payments no pending evaluation can see.
    k = 0;
    for (int i = 0; i < n; i++) {
      if (ts[i] > wm - NEW_COUNTRY_MS) {
        ts[k] = ts[i];
        amount[k] = amount[i];
        country[k++] = country[i];
      }
    }
    n = k;
    if (n == ts.length) {
      ts = java.util.Arrays.copyOf(ts, n * 2);
      amount = java.util.Arrays.copyOf(amount, n * 2);
      country = java.util.Arrays.copyOf(country, n * 2);
    }
    ts[n] = p.ts;
    amount[n] = p.amount;
    country[n++] = p.country;
    if (pn == pts.length) {
      pts = java.util.Arrays.copyOf(pts, pn * 2);
      pcountry = java.util.Arrays.copyOf(pcountry, pn * 2);
      praw = java.util.Arrays.copyOf(praw, pn * 2);
    }
    pts[pn] = p.ts;
    pcountry[pn] = p.country;
    praw[pn++] = p.raw;
    return true;
  }

  /** Evaluates the rolling rules of every pending payment at or before `wm`. */
  public void onWatermark(String user, long wm, List<String> out) {
    int k = 0;
    for (int j = 0; j < pn; j++) {
      if (pts[j] > wm) {
        pts[k] = pts[j];
        pcountry[k] = pcountry[j];
        praw[k++] = praw[j];
        continue;
      }
      long t = pts[j];
      long velocity = 0, inMonth = 0, sameCountry = 0;
      double burst = 0;
      for (int i = 0; i < n; i++) {
        long x = ts[i];
        if (x > t) continue;
        if (x > t - VELOCITY_MS) velocity++;
        if (x > t - BURST_MS) burst += amount[i];
        if (x > t - NEW_COUNTRY_MS) {
          inMonth++;
          if (country[i].equals(pcountry[j])) sameCountry++;
        }
      }
      if (velocity > 3) out.add(alert("velocity", user, t, "\"n\":" + velocity, praw[j]));
      if (inMonth > 1 && sameCountry == 1) {
        out.add(alert("new_country", user, t, "\"n\":" + inMonth, praw[j]));
      }
      if (burst > 10000) out.add(alert("burst_spend", user, t, "\"total\":" + burst, praw[j]));
    }
    for (int j = k; j < pn; j++) praw[j] = null;
    pn = k;
  }

  /** An alert as Sluice writes it (without "id" and "source"). */
  public static String alert(String rule, String key, long t, String agg, String raw) {
    StringBuilder b = new StringBuilder(96 + raw.length());
    b.append("{\"job\":\"fraud\",\"rule\":\"").append(rule).append("\",\"key\":\"").append(key);
    b.append("\",\"event_time\":").append(t).append(',');
    if (agg != null) b.append(agg).append(',');
    b.append("\"event\":").append(raw).append('}');
    return b.toString();
  }

  public byte[] toBytes() {
    try {
      ByteArrayOutputStream bo = new ByteArrayOutputStream(32 + n * 20 + dn * 24 + pn * 200);
      DataOutputStream o = new DataOutputStream(bo);
      o.writeInt(n);
      for (int i = 0; i < n; i++) {
        o.writeLong(ts[i]);
        o.writeDouble(amount[i]);
        o.writeUTF(country[i]);
      }
      o.writeInt(dn);
      for (int i = 0; i < dn; i++) {
        o.writeUTF(dtxn[i]);
        o.writeLong(dts[i]);
      }
      o.writeInt(pn);
      for (int i = 0; i < pn; i++) {
        o.writeLong(pts[i]);
        o.writeUTF(pcountry[i]);
        o.writeUTF(praw[i]);
      }
      return bo.toByteArray();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static FraudState fromBytes(byte[] bytes) {
    FraudState s = new FraudState();
    if (bytes == null) return s;
    try {
      DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes));
      s.n = in.readInt();
      int cap = Math.max(4, s.n + 1);
      s.ts = new long[cap];
      s.amount = new double[cap];
      s.country = new String[cap];
      for (int i = 0; i < s.n; i++) {
        s.ts[i] = in.readLong();
        s.amount[i] = in.readDouble();
        s.country[i] = in.readUTF();
      }
      s.dn = in.readInt();
      cap = Math.max(4, s.dn + 1);
      s.dtxn = new String[cap];
      s.dts = new long[cap];
      for (int i = 0; i < s.dn; i++) {
        s.dtxn[i] = in.readUTF();
        s.dts[i] = in.readLong();
      }
      s.pn = in.readInt();
      cap = Math.max(2, s.pn + 1);
      s.pts = new long[cap];
      s.pcountry = new String[cap];
      s.praw = new String[cap];
      for (int i = 0; i < s.pn; i++) {
        s.pts[i] = in.readLong();
        s.pcountry[i] = in.readUTF();
        s.praw[i] = in.readUTF();
      }
      return s;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
