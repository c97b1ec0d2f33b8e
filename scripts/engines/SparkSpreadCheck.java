// A Spark job of Spark's own Java API, run by `scripts/engines.sh check spark-cluster`: the sum of
// squares of 1..n over two partitions (one executor per worker), printed as `sum_of_squares=<n>`.
// No Beam: it shows the standalone cluster itself runs work on its workers.
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.LongStream;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaSparkContext;

public class SparkSpreadCheck {
  public static void main(String[] args) {
    long n = Long.parseLong(args[0]);
    List<Long> numbers = LongStream.rangeClosed(1, n).boxed().collect(Collectors.toList());
    try (JavaSparkContext sc = new JavaSparkContext(new SparkConf().setAppName("kubetfx-spread-check"))) {
      long sum = sc.parallelize(numbers, 2).map(x -> x * x).reduce(Long::sum);
      System.out.println("sum_of_squares=" + sum);
    }
  }
}
