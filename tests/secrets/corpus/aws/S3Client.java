package billing;

class S3Client {
  private static final String awsSecretKey = "BvKoplR+T6he7j8V0hpzRClsbgtYB7xuwJaCiGFc";
}
