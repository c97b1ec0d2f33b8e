// A Flink job of Flink's own DataStream API, run by `scripts/engines.sh check flink-cluster`:
// the sum of squares of 1..n computed at the job's parallelism (one subtask per TaskManager
// slot), collected by the client and printed as `sum_of_squares=<n>`. No Beam: it shows the
// session cluster itself runs work on its TaskManagers.
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.CloseableIterator;

public class SpreadCheck {
  public static void main(String[] args) throws Exception {
    long n = Long.parseLong(args[0]);
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setRuntimeMode(RuntimeExecutionMode.BATCH);
    long sum = 0;
    try (CloseableIterator<Long> squares =
        env.fromSequence(1, n).map(x -> x * x).returns(Long.class)
            .executeAndCollect("kubetfx-spread-check")) {
      while (squares.hasNext()) {
        sum += squares.next();
      }
    }
    System.out.println("sum_of_squares=" + sum);
  }
}
