package sluice.peers;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;

/** A click of examples/jobs/sessions.yaml's input. */
@JsonIgnoreProperties(ignoreUnknown = true)
public class Click {
  public String user_id;
  public String page;
  public long ts;
  public Double amount;  // only checkout clicks have one

  public Click() {}

  public static Click parse(byte[] bytes) {
    try {
      Click c = Payment.MAPPER.readValue(bytes, Click.class);
      return c.user_id == null || c.page == null ? null : c;
    } catch (Exception e) {
      return null;
    }
  }
}
