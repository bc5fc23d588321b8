package android.graphics;

public class Canvas {
    public Canvas(Bitmap bitmap) { throw new RuntimeException("Stub!"); }

    public void drawColor(int color) { throw new RuntimeException("Stub!"); }

    public void drawBitmap(Bitmap bitmap, Rect src, Rect dst, Paint paint) { throw new RuntimeException("Stub!"); }
}
