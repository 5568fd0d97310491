package sluice.peers;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;

/** A payment of examples/jobs/fraud.yaml's input, and the JSON it was read from. */
@JsonIgnoreProperties(ignoreUnknown = true)
public class Payment {
  public static final ObjectMapper MAPPER =
      new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  public String user_id;
  public double amount;
  public String country;
  public String status;
  public long ts;
  public String transaction_id;
  /** The record as read (the alert's "event"); not a JSON field. */
  public String raw;

  public Payment() {}

  /** Null for a record that is not a payment (Sluice sends those to the dead-letter topic). */
  public static Payment parse(byte[] bytes) {
    try {
      Payment p = MAPPER.readValue(bytes, Payment.class);
      if (p.user_id == null || p.country == null || p.transaction_id == null) return null;
      p.raw = new String(bytes, StandardCharsets.UTF_8);
      return p;
    } catch (Exception e) {
      return null;
    }
  }

  /** fraud.yaml's filter: amount > 0 && status == "approved". */
  public boolean passes() {
    return amount > 0 && "approved".equals(status);
  }
}
