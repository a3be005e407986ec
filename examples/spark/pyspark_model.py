# A PySpark model in ModelOp's convention: init makes the SparkSession; score gets the job's
# inputs, outputs and the model's external files as lists of asset dicts and does its own
# I/O through Spark. Run it with `"runtime": "spark"` (docs/spark.md).
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

spark = None


# modelop.init
def begin():
    global spark
    spark = SparkSession.builder.appName("credit-limits").getOrCreate()


# modelop.score
def score(external_inputs, external_outputs, external_model_assets):
    source = external_inputs[0]["fileUrl"]
    dest = external_outputs[0]["fileUrl"]
    frame = spark.read.option("header", "true").option("inferSchema", "true").csv(source)
    scored = frame.withColumn(
        "limit", F.when(F.col("income") > 50000, F.lit(10000)).otherwise(F.lit(2500))
    )
    scored.write.mode("overwrite").json(dest)
