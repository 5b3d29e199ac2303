// DynamoDB Local bound to 127.0.0.1 only. Its own main (ServerRunner) has no bind-address flag and
// listens on every interface; this builds the same server from the same flags, then points its
// Jetty connector at loopback before starting it. Run with the JDK's source launcher:
//   java -cp 'DynamoDBLocal.jar:DynamoDBLocal_lib/*' LoopbackDynamoDbLocal.java <DynamoDB Local flags>
import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public class LoopbackDynamoDbLocal {
  public static void main(String[] args) throws Exception {
    String host = System.getProperty("hangar.bindHost", "127.0.0.1");
    DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
    Field field = DynamoDBProxyServer.class.getDeclaredField("server");
    field.setAccessible(true);
    Server jetty = (Server) field.get(proxy);
    Connector[] connectors = jetty.getConnectors();
    if (connectors.length == 0) throw new IllegalStateException("DynamoDB Local built no connector");
    for (Connector connector : connectors) {
      if (!(connector instanceof ServerConnector)) {
        throw new IllegalStateException("unexpected connector " + connector.getClass().getName());
      }
      ((ServerConnector) connector).setHost(host);
    }
    // safeStart, not start: start() swallows a bind failure (prints it and stops), safeStart throws.
    // Jetty's threads would keep the JVM up after a throw from main: exit, so the starter sees it at once.
    try {
      proxy.safeStart();
    } catch (Exception failure) {
      System.err.println("Failed to bind to " + host + ": " + failure);
      failure.printStackTrace();
      System.exit(3);
    }
    System.out.println("DynamoDB Local listening on " + host + ":" + ((ServerConnector) connectors[0]).getLocalPort());
    proxy.join();
  }
}
