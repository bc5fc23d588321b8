package android.graphics;

public class BitmapFactory {
    public static Bitmap decodeFile(String pathName) { throw new RuntimeException("Stub!"); }
}
